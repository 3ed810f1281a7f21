"""What training writes to the log: a line every LOG_PERIOD steps, from every command, rank 0 only."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil

import pytest
from test_engine import tiny_run

from vidact.cli.main import main
from vidact.config.run import TestConfig, TrainConfig
from vidact.config.run_io import dump_run_config
from vidact.data.synthetic import make_classification
from vidact.engine.trainer import train

LINE_START = r"\d{4}-\d\d-\d\d [\d:,]+ "  # the log format's timestamp


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    # 8 training clips: 4 steps of 2, or 2 steps of 4.
    return make_classification(tmp_path_factory.mktemp("synthetic"), num_classes=4, videos_per_class=2,
                               val_per_class=1, height=32, width=40, num_frames=12)


@contextlib.contextmanager
def fresh_logging():
    """Logging as a new process finds it, for the CLI's set-up to act on; entered in the test
    itself, as pytest adds its capture handlers to the root logger once the test is called."""
    root, ours = logging.getLogger(), logging.getLogger("vidact")
    handlers, levels = root.handlers[:], (root.level, ours.level)
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.NOTSET)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_log_period_steps_log_one_line_clear_of_the_progress_bar(synthetic, tmp_path, monkeypatch, caplog):
    terminal = _Terminal()  # so the tqdm bar shows, on the stream the log writes to
    monkeypatch.setattr("sys.stderr", terminal)
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    caplog.set_level(logging.INFO, logger="vidact")
    logging.getLogger("vidact").addHandler(handler)
    run = tiny_run(synthetic.root, tmp_path, max_epoch=1).replace(
        log_period=2, train=TrainConfig(batch_size=2, eval_period=100))
    try:
        train(run, progress=True)
    finally:
        logging.getLogger("vidact").removeHandler(handler)
    # The bar redraws itself with carriage returns; each log line must start on a line of its own.
    segments = re.split(r"[\r\n]", terminal.getvalue())
    periodic = [s for s in segments if "INFO epoch 1/1 step" in s]
    assert [re.search(r"step (\d+/\d+):", s).group(1) for s in periodic] == ["2/4", "4/4"]
    assert all(re.match(LINE_START + "INFO epoch", s) for s in periodic), periodic
    for name in ("train/loss", "train/top1_err", "train/clips_per_s", "lr"):
        assert all(f" {name} " in s for s in periodic)
    assert "%|" in terminal.getvalue()  # the bar was there to be cleared


def test_vidact_run_logs_its_training(synthetic, tmp_path, capsys):
    run = tiny_run(synthetic.root, tmp_path / "out", max_epoch=1).replace(
        log_period=1, test=TestConfig(enable=False))
    cfg = tmp_path / "run.yaml"
    dump_run_config(run, cfg)
    with fresh_logging():
        assert main(["run", "--cfg", str(cfg), "--no-progress"]) == 0
    logged = [line for line in capsys.readouterr().err.splitlines() if re.match(LINE_START + "INFO ", line)]
    assert [re.search(r"INFO epoch 1/1 step (\d)/2: ", line).group(1) for line in logged if " step " in line] == ["1", "2"]
    assert sum(" INFO epoch 1/1: train_epoch/loss " in line for line in logged) == 1
    assert sum(" INFO saved " in line for line in logged) == 1
    assert sum(" INFO epoch 1 evaluation: " in line for line in logged) == 1


def test_other_ranks_log_warnings_only(synthetic, tmp_path, capsys, monkeypatch):
    import vidact.engine.trainer

    # No val.csv: training warns that it skips evaluation, which rank 1 must still show.
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(synthetic.root / "train.csv", data / "train.csv")
    cfg = tmp_path / "run.yaml"
    dump_run_config(tiny_run(data, tmp_path / "out", max_epoch=1).replace(log_period=1), cfg)
    single_process_train = vidact.engine.trainer.train

    def train_after_logging_set_up(*args, **kwargs):
        # Rank 1 without its rank 0 cannot train; only the logging set-up needs to see rank 1.
        monkeypatch.delenv("RANK")
        return single_process_train(*args, **kwargs)

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(vidact.engine.trainer, "train", train_after_logging_set_up)
    with fresh_logging():
        assert main(["train", "--cfg", str(cfg), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert re.search(LINE_START + "WARNING no val.csv in ", err)
    assert " INFO " not in err
