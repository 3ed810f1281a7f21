"""Training engine: schedules, optimizer groups, exact resume, configs and the train/test commands."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import shared_path

from vidact.config.model import InputSpec, ModelConfig, ResNetConfig, X3DConfig
from vidact.config.run import CheckpointConfig, DataConfig, DataLoaderConfig, RunConfig, SolverConfig, TestConfig, TrainConfig
from vidact.config.run_io import dump_run_config, load_run_config
from vidact.data.synthetic import make_classification
from vidact.engine.checkpoint import latest_checkpoint, load_optimizer_state
from vidact.engine.hooks import HookBase
from vidact.engine.optim import build_optimizer, lr_at_epoch
from vidact.engine.trainer import train
from vidact.errors import VidactError

# X3D with half depth and narrow stages: a fraction of a second per step on two CPU cores.
TINY_MODEL = ModelConfig(
    arch="x3d", num_classes=4, dropout_rate=0.0, input_channels=(3,),
    resnet=ResNetConfig(trans_func="x3d_transform"), x3d=X3DConfig(depth_factor=0.5, dim_c1=8, dim_c5=64),
    input=InputSpec(num_frames=8, sampling_rate=2, train_crop_size=32, test_crop_size=32, train_jitter_scales=(32, 36)),
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_classification(tmp_path_factory.mktemp("synthetic"), num_classes=4, videos_per_class=2,
                               val_per_class=1, height=32, width=40, num_frames=12)


def tiny_run(data_dir, output_dir, **solver) -> RunConfig:
    return RunConfig(
        model=TINY_MODEL,
        data=DataConfig(data_dir=str(data_dir)),
        solver=SolverConfig(**{"base_lr": 0.05, "max_epoch": 2, "warmup_epochs": 1.0, "warmup_start_lr": 0.01, **solver}),
        train=TrainConfig(batch_size=4, eval_period=100),
        test=TestConfig(batch_size=4),
        data_loader=DataLoaderConfig(num_workers=0, pin_memory=False),
        checkpoint=CheckpointConfig(period=1),
        output_dir=str(output_dir), num_gpus=0, seed=3,
    )


# -- schedules ------------------------------------------------------------------------------


def test_cosine_with_warmup_matches_hand_computed_values():
    solver = SolverConfig(base_lr=0.1, lr_policy="cosine", max_epoch=100, warmup_epochs=10.0,
                          warmup_start_lr=0.01, cosine_end_lr=0.001)
    cosine = lambda e: 0.001 + (0.1 - 0.001) * (math.cos(math.pi * e / 100) + 1) / 2  # noqa: E731
    assert lr_at_epoch(solver, 0.0) == pytest.approx(0.01)
    # Linear from 0.01 at epoch 0 to cosine(10) at epoch 10.
    assert lr_at_epoch(solver, 4.5) == pytest.approx(0.01 + 4.5 * (cosine(10) - 0.01) / 10)
    assert lr_at_epoch(solver, 10.0) == pytest.approx(cosine(10))
    assert lr_at_epoch(solver, 50.0) == pytest.approx(0.0505)
    assert lr_at_epoch(solver, 100.0) == pytest.approx(0.001)
    after = SolverConfig(base_lr=0.1, max_epoch=100, warmup_epochs=10.0, cosine_after_warmup=True)
    assert lr_at_epoch(after, 10.0) == pytest.approx(0.1)
    assert lr_at_epoch(after, 55.0) == pytest.approx(0.05)


def test_steps_with_relative_lrs_and_warmup():
    solver = SolverConfig(base_lr=0.4, lr_policy="steps_with_relative_lrs", steps=(0, 30, 40), lrs=(1, 0.1, 0.01),
                          max_epoch=50, warmup_epochs=2.0, warmup_start_lr=0.04)
    assert lr_at_epoch(solver, 1.0) == pytest.approx(0.04 + (0.4 - 0.04) / 2)
    assert lr_at_epoch(solver, 29.99) == pytest.approx(0.4)
    assert lr_at_epoch(solver, 30.0) == pytest.approx(0.04)
    assert lr_at_epoch(solver, 45.0) == pytest.approx(0.004)
    with pytest.raises(VidactError, match="STEPS"):
        lr_at_epoch(SolverConfig(lr_policy="steps_with_relative_lrs", steps=(5, 10), lrs=(1, 0.1)), 1.0)


def test_steps_past_max_epoch_and_shard_scaling_follow_pyslowfast():
    # Warm-up reaching MAX_EPOCH evaluates the schedule there: PySlowFast's get_step_index gives the last step.
    steps = SolverConfig(lr_policy="steps_with_relative_lrs", base_lr=0.1, steps=(0,), lrs=(1.0,), max_epoch=2,
                         warmup_epochs=2.0, warmup_start_lr=0.01)
    assert lr_at_epoch(steps, 0.0) == pytest.approx(0.01) and lr_at_epoch(steps, 2.0) == pytest.approx(0.1)
    from vidact.engine.trainer import _scaled_solver

    run = RunConfig(solver=SolverConfig(base_lr=0.1, warmup_start_lr=0.01, cosine_end_lr=0.001, scale_lr_by_shards=True),
                    num_shards=4)
    scaled = _scaled_solver(run)  # assert_and_infer_cfg scales all three rates
    assert (scaled.base_lr, scaled.warmup_start_lr, scaled.cosine_end_lr) == pytest.approx((0.4, 0.04, 0.004))


@pytest.mark.parametrize("clip, like", [
    (dict(clip_grad_value=0.01, clip_grad_norm=0.001), dict(clip_grad_value=0.01)),  # by value, else by norm
    (dict(clip_grad_norm=0.0), dict()),  # 0 is off
    (dict(clip_grad_value=0.0, clip_grad_norm=0.001), dict(clip_grad_norm=0.001)),
])
def test_gradient_clipping_follows_pyslowfast(clip, like):
    from vidact.engine.trainer import Trainer

    def step_size(**options) -> float:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        before = model.weight.detach().clone()
        solver = SolverConfig(base_lr=1.0, lr_policy="constant", max_epoch=1, momentum=0.0, weight_decay=0.0, **options)
        batch = {"inputs": torch.arange(1.0, 13.0).reshape(4, 3), "label": torch.tensor([0, 1, 0, 1])}
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=1.0), [batch], solver,
                          device=torch.device("cpu"), forward=lambda module, b: module(b["inputs"]))
        trainer.run_step(batch)
        return float((before - model.weight.detach()).norm())

    assert step_size(**clip) == pytest.approx(step_size(**like))
    assert step_size(clip_grad_value=0.01) < step_size()  # clipping does something here


def test_optimizer_groups_follow_pyslowfast():
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    sgd = build_optimizer(model, SolverConfig(weight_decay=1e-4, bn_weight_decay=0.0, nesterov=True, momentum=0.9))
    decays = sorted((g["weight_decay"], len(g["params"])) for g in sgd.param_groups)
    assert decays == [(0.0, 2), (1e-4, 4)]  # BN weight+bias; conv and linear weight+bias
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    zero_1d = build_optimizer(model, SolverConfig(zero_wd_1d_param=True, optimizer="adamw", weight_decay=0.05))
    assert isinstance(zero_1d, torch.optim.AdamW)
    assert sorted((g["weight_decay"], len(g["params"])) for g in zero_1d.param_groups) == [(0.0, 2), (0.0, 2), (0.05, 2)]


def test_optimizer_state_of_another_head_is_skipped_with_warning():
    small, large = torch.nn.Linear(4, 2), torch.nn.Linear(4, 3)
    opt_small = torch.optim.SGD(small.parameters(), lr=0.1, momentum=0.9)
    small(torch.randn(2, 4)).sum().backward()
    opt_small.step()
    opt_large = torch.optim.SGD(large.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(UserWarning, match="optimizer state not loaded"):
        assert not load_optimizer_state(opt_large, opt_small.state_dict(), "ckpt.pyth")
    assert load_optimizer_state(torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.1, momentum=0.9),
                                opt_small.state_dict(), "ckpt.pyth")
    # Another method with the same parameters (fine-tuning with adamw): warned and skipped, not a crash.
    adamw = torch.optim.AdamW(torch.nn.Linear(4, 2).parameters())
    with pytest.warns(UserWarning, match="optimizer state not loaded"):
        assert not load_optimizer_state(adamw, opt_small.state_dict(), "ckpt.pyth")


def _linear_trainer(model, optimizer, loss="cross_entropy", label=torch.tensor(0)):
    from torch.utils.data import DataLoader

    from vidact.engine.trainer import Trainer

    items = [{"inputs": torch.randn(4), "label": label} for _ in range(4)]
    return Trainer(model, optimizer, DataLoader(items, batch_size=2), SolverConfig(max_epoch=1),
                   device=torch.device("cpu"), loss=loss, forward=lambda module, b: module(b["inputs"]))


def test_non_finite_bce_outputs_are_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Sigmoid())
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))  # diverged weights
    trainer = _linear_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss="bce", label=torch.ones(3))
    with pytest.raises(VidactError, match="training loss became nan .*SOLVER.BASE_LR"):
        trainer.train(0, 1)


def test_resume_with_another_model_or_optimizer_is_a_clear_error(tmp_path):
    model = torch.nn.Linear(4, 2)
    trainer = _linear_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    trainer.train(0, 1)
    ckpt = trainer.save_checkpoint(tmp_path / "checkpoint_epoch_00001.pyth")
    other_size = torch.nn.Linear(4, 3)  # MODEL.NUM_CLASSES changed
    with pytest.raises(VidactError, match="another model .*shape.*AUTO_RESUME False"):
        _linear_trainer(other_size, torch.optim.SGD(other_size.parameters(), lr=0.1, momentum=0.9)).resume(ckpt)
    same = torch.nn.Linear(4, 2)
    with pytest.raises(VidactError, match="optimizer state .*AUTO_RESUME False"):
        _linear_trainer(same, torch.optim.AdamW(same.parameters())).resume(ckpt)  # OPTIMIZING_METHOD changed
    # Same hyperparameter names, other per-parameter state: AdamW with amsgrad keeps max_exp_avg_sq.
    adamw = _linear_trainer(same, torch.optim.AdamW(same.parameters()))
    adamw.train(0, 1)
    ckpt = adamw.save_checkpoint(tmp_path / "adamw.pyth")
    with pytest.raises(VidactError, match="max_exp_avg_sq"):
        _linear_trainer(same, torch.optim.AdamW(same.parameters(), amsgrad=True)).resume(ckpt)
    assert _linear_trainer(same, torch.optim.AdamW(same.parameters())).resume(ckpt) == 1


def test_default_hooks_order_and_tensorboard_dir(tmp_path):
    from vidact.engine.hooks import EvalHook, MetricsHook, PeriodicCheckpointer, ProgressBar, TensorBoardWriter
    from vidact.engine.trainer import default_hooks

    run = RunConfig(output_dir=str(tmp_path / "out"), tensorboard=True, tensorboard_dir="tb")
    kinds = [type(h) for h in default_hooks(run, lambda: {})]
    # The bar closes before the epoch's log lines; the checkpoint is saved before evaluating (PySlowFast).
    assert kinds.index(ProgressBar) < kinds.index(MetricsHook)
    assert kinds.index(PeriodicCheckpointer) < kinds.index(EvalHook)
    # TENSORBOARD.LOG_DIR is relative to OUTPUT_DIR, as in PySlowFast; an absolute one stays.
    for log_dir, expected in (("tb", tmp_path / "out" / "tb"), (str(tmp_path / "abs"), tmp_path / "abs")):
        hooks = default_hooks(run.replace(tensorboard_dir=log_dir), None)
        assert [h.log_dir for h in hooks if isinstance(h, TensorBoardWriter)] == [expected]


def test_progress_bar_stays_off_a_non_terminal(monkeypatch):
    import io
    from types import SimpleNamespace

    from vidact.engine.hooks import ProgressBar

    stderr = io.StringIO()  # a log file, not a terminal
    monkeypatch.setattr("sys.stderr", stderr)
    bar = ProgressBar()
    bar.trainer = SimpleNamespace(iters_per_epoch=2, epoch=0, max_epoch=1, lr=0.1,
                                  step_metrics={"loss_sum": 1.0, "samples": 1.0})
    bar.before_epoch()
    bar.after_step()
    bar.after_epoch()
    assert stderr.getvalue() == ""


def test_unwritable_output_dir_fails_before_training(synthetic, tmp_path):
    class CountSteps(HookBase):
        steps = 0

        def before_step(self) -> None:
            CountSteps.steps += 1

    (tmp_path / "a_file").write_text("")
    with pytest.raises(VidactError, match="cannot write output there"):
        train(tiny_run(synthetic.root, tmp_path / "a_file" / "out"), extra_hooks=[CountSteps()], progress=False)
    assert CountSteps.steps == 0


# -- exact resume ---------------------------------------------------------------------------


class _StopAfterEpoch(HookBase):
    """Simulates a crash once epoch ``stop`` (0-based) is checkpointed."""

    def __init__(self, stop: int) -> None:
        self.stop = stop

    def after_epoch(self) -> None:
        if self.trainer.epoch == self.stop:
            raise KeyboardInterrupt("simulated kill")


def test_resumed_run_ends_with_identical_weights(synthetic, tmp_path):
    whole = train(tiny_run(synthetic.root, tmp_path / "whole"), deterministic=True, progress=False)
    killed_run = tiny_run(synthetic.root, tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        train(killed_run, deterministic=True, extra_hooks=[_StopAfterEpoch(0)], progress=False)
    first_epoch = latest_checkpoint(tmp_path / "killed")
    assert first_epoch.name == "checkpoint_epoch_00001.pyth"
    # The resumed process loads with worker processes: augmentation must not depend on them.
    resumed_run = killed_run.replace(data_loader=DataLoaderConfig(num_workers=2, pin_memory=False))
    resumed = train(resumed_run, deterministic=True, progress=False)
    assert resumed.start_epoch == 1 and resumed.checkpoints[-1].name == "checkpoint_epoch_00002.pyth"
    expected = whole.trainer.module.state_dict()
    got = resumed.trainer.module.state_dict()
    assert expected.keys() == got.keys()
    assert [name for name in expected if not torch.equal(expected[name], got[name])] == []
    # The second epoch changed the weights, so the comparison above had something to catch.
    after_first = torch.load(first_epoch, weights_only=True)["model_state"]
    assert any(not torch.equal(after_first[n], got[n]) for n in got if got[n].is_floating_point())


def test_checkpoints_are_readable_as_weights_and_fine_tune_with_new_head(synthetic, tmp_path):
    from vidact.api import create_model

    first = train(tiny_run(synthetic.root, tmp_path / "a", max_epoch=1).replace(tensorboard=True), progress=False)
    assert list((tmp_path / "a" / "runs-kinetics").glob("events.out.tfevents.*"))
    ckpt = first.checkpoints[-1]
    model = create_model(TINY_MODEL, weights=ckpt)
    trained = first.trainer.module.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())
    # Testing it with another MODEL.NUM_CLASSES would score a random head: an error, and no
    # warning that the head "needs training" before it.
    from vidact.engine.trainer import test as test_run

    with warnings.catch_warnings(record=True) as caught, pytest.raises(VidactError, match="MODEL.NUM_CLASSES"):
        warnings.simplefilter("always")
        test_run(tiny_run(synthetic.root, tmp_path / "a").replace(model=TINY_MODEL.replace(num_classes=5)), ckpt)
    assert [str(w.message) for w in caught if "head" in str(w.message)] == []
    with pytest.warns(UserWarning, match="optimizer state not loaded|head"):
        fine = train(
            tiny_run(synthetic.root, tmp_path / "b", max_epoch=1).replace(
                model=TINY_MODEL.replace(num_classes=5), checkpoint=CheckpointConfig(train_path=str(ckpt), period=1),
                # More than the 8 clips: one partial batch. bfloat16 autocast and clipping on the way.
                train=TrainConfig(batch_size=64, eval_period=100, mixed_precision=True),
                solver=SolverConfig(base_lr=0.05, max_epoch=1, clip_grad_norm=1.0),
            ),
            progress=False,
        )
    assert fine.start_epoch == 0 and fine.trainer.iters_per_epoch == 1
    assert fine.trainer.amp_dtype == torch.bfloat16 and not fine.trainer.scaler.is_enabled()
    assert math.isfinite(fine.final_metrics["train_epoch/loss"])
    assert fine.trainer.module.head.projection.out_features == 5


def test_fine_tuning_skips_weights_of_other_shapes_as_pyslowfast_does():
    """c3_train.yaml's case: a fusion kernel other than the pretrain's. PySlowFast skips those
    tensors ("does not match"); inference with the same weights stays an error."""
    import dataclasses

    from vidact.api import create_model
    from vidact.config.pyslowfast import load_run_config as load_pyslowfast_run_config
    from vidact.engine.trainer import _load_initial_weights
    from vidact.weights.checkpoint import SkippedWeightsWarning

    folder = shared_path("fixtures", "parity", "tiny_k400_slowfast")  # fusion kernel 7
    weights = folder / "model_c2.pkl"
    run = load_pyslowfast_run_config(folder / "config.yaml", [
        "SLOWFAST.FUSION_KERNEL_SZ", "5", "TRAIN.CHECKPOINT_FILE_PATH", str(weights), "TRAIN.CHECKPOINT_TYPE", "caffe2",
    ])
    model = create_model(run.model)
    initial = {n: t.clone() for n, t in model.state_dict().items()}
    with pytest.warns(SkippedWeightsWarning, match=r"model_c2.pkl: skipped 4 tensors .*\(s1_fuse.conv_f2s.weight, "):
        assert _load_initial_weights(run, model, build_optimizer(model, run.solver)) == 0
    pretrained = torch.load(folder / "model.pyth", weights_only=True)["model_state"]
    for name, tensor in model.state_dict().items():
        expected = initial[name] if name.endswith("_fuse.conv_f2s.weight") or name.endswith("num_batches_tracked") else pretrained[name]
        assert torch.equal(tensor, expected), name
    with pytest.raises(VidactError, match="weights do not fit this model"):
        create_model(run.model, weights=weights)
    x3d = dataclasses.replace(run.checkpoint, train_path=str(shared_path("fixtures", "parity", "tiny_x3d", "model_c2.pkl")))
    with pytest.raises(VidactError, match=r"only \d+ of \d+ tensors match"):  # another network altogether
        _load_initial_weights(run.replace(checkpoint=x3d), model, build_optimizer(model, run.solver))


@pytest.fixture(scope="module")
def one_epoch(synthetic, tmp_path_factory):
    """A tiny run trained for one epoch: its checkpoint, copied into the tests' own OUTPUT_DIRs."""
    return train(tiny_run(synthetic.root, tmp_path_factory.mktemp("one_epoch"), max_epoch=1), progress=False).checkpoints[-1]


def _pyslowfast_checkpoint(path, epoch, *, model_config=TINY_MODEL):
    """What PySlowFast's save_checkpoint writes: no format marker, no RNG state, and its own
    layer_decay / apply_LARS keys in the optimizer's parameter groups."""
    from vidact.api import create_model

    model = create_model(model_config)
    optimizer = build_optimizer(model, SolverConfig())
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    optimizer.step()
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        group.update(layer_decay=1.0, apply_LARS=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "model_state": model.state_dict(), "optimizer_state": state, "cfg": "NUM_GPUS: 1\n"}, path)
    return model, optimizer


def test_run_tests_the_checkpoint_it_trained_not_a_stale_later_one(synthetic, tmp_path, caplog):
    from vidact.api import create_model
    from vidact.cli.run import _train_and_test
    from vidact.engine.checkpoint import checkpoint_path, save_training_checkpoint

    # An earlier, longer run left epoch 10 in OUTPUT_DIR, of a 5-class model: testing it is an error.
    stale = checkpoint_path(tmp_path, 9)
    stale.parent.mkdir(parents=True)
    save_training_checkpoint(stale, epoch=9, model_state=create_model(TINY_MODEL.replace(num_classes=5)).state_dict(),
                             optimizer_state={}, scaler_state=None, scheduler_state={}, sampler_state={})
    run = tiny_run(synthetic.root, tmp_path, max_epoch=1).replace(checkpoint=CheckpointConfig(period=1, auto_resume=False))
    caplog.set_level("INFO", logger="vidact.train")
    with pytest.warns(UserWarning, match=r"epochs up to 10, later than .*MAX_EPOCH 1; they are left there .*AUTO_RESUME"):
        _train_and_test(run, progress=False)
    fresh = checkpoint_path(tmp_path, 0)
    assert fresh.is_file() and stale.is_file()
    assert f"testing {fresh}" in caplog.text


def test_labels_beyond_num_classes_are_refused_when_the_dataset_is_built(tmp_path, monkeypatch):
    from vidact.engine.trainer import TASKS

    monkeypatch.chdir(tmp_path)  # the list's relative paths name files that exist (a missing one is refused first)
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).touch()
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("a.mp4 1\n\nb.mp4 4\n")
    run = tiny_run(tmp_path, tmp_path / "out")  # MODEL.NUM_CLASSES 4
    for split in ("train", "test"):
        with pytest.raises(VidactError, match=rf"{split}.csv: label 4 .*b.mp4.*MODEL.NUM_CLASSES 4"):
            TASKS["kinetics"].build_dataset(run, split)
    (tmp_path / "train.csv").write_text("a.mp4 3\n")
    assert TASKS["kinetics"].build_dataset(run, "train").labels == [3]


def test_pyslowfast_checkpoint_in_output_dir_resumes_as_pyslowfast_does(synthetic, tmp_path):
    from vidact.engine.checkpoint import checkpoint_path

    foreign = checkpoint_path(tmp_path, 0)
    model, optimizer = _pyslowfast_checkpoint(foreign, 0)
    before = foreign.read_bytes()
    run = tiny_run(synthetic.root, tmp_path, max_epoch=2)
    with pytest.warns(UserWarning, match=r"PySlowFast checkpoint.*at epoch 2 .*not an exact resume") as caught:
        trainer, start = _resume_only(run)
    assert not [w for w in caught if "optimizer state not loaded" in str(w.message)]
    assert start == 1
    assert all(torch.equal(v, trainer.module.state_dict()[k]) for k, v in model.state_dict().items())
    stored = optimizer.state_dict()["state"]
    loaded = trainer.optimizer.state_dict()["state"]
    assert stored.keys() == loaded.keys() and all(torch.equal(stored[i]["momentum_buffer"], loaded[i]["momentum_buffer"]) for i in stored)
    assert all("layer_decay" not in group for group in trainer.optimizer.param_groups)
    with pytest.warns(UserWarning, match="not an exact resume"):
        result = train(run, progress=False)
    assert result.start_epoch == 1 and result.checkpoints == [checkpoint_path(tmp_path, 1)]
    assert foreign.read_bytes() == before


def _resume_only(run):
    """The trainer `train` builds, resumed from the latest checkpoint, without training."""
    from vidact.engine import trainer as engine

    built = {}

    class Stop(HookBase):
        def before_train(self) -> None:
            built["trainer"] = self.trainer
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.train(run, extra_hooks=[Stop()], progress=False)
    return built["trainer"], built["trainer"].start_epoch


def test_unusable_foreign_checkpoint_error_says_to_move_it_out(synthetic, tmp_path):
    from vidact.engine.checkpoint import checkpoint_path

    foreign = checkpoint_path(tmp_path, 3)
    _pyslowfast_checkpoint(foreign, 3, model_config=TINY_MODEL.replace(num_classes=7))
    with pytest.raises(VidactError, match=rf"{foreign}: .*another model.*move it out of {foreign.parent}"):
        train(tiny_run(synthetic.root, tmp_path), progress=False)
    foreign.write_bytes(b"not a checkpoint")
    with pytest.raises(VidactError, match=rf"{foreign}: .*move it out of {foreign.parent}"):
        train(tiny_run(synthetic.root, tmp_path), progress=False)


def test_overwriting_a_foreign_checkpoint_is_said(synthetic, tmp_path):
    from vidact.engine.checkpoint import checkpoint_path, is_training_checkpoint

    foreign = checkpoint_path(tmp_path, 0)
    _pyslowfast_checkpoint(foreign, 0)
    run = tiny_run(synthetic.root, tmp_path, max_epoch=1).replace(checkpoint=CheckpointConfig(period=1, auto_resume=False))
    with pytest.warns(UserWarning, match=rf"this run overwrites {foreign.name}, not written by vidact; move it out"):
        train(run, progress=False)
    assert is_training_checkpoint(foreign)


def test_resume_applies_the_configs_optimizer_settings(tmp_path):
    model = torch.nn.Linear(4, 2)
    trainer = _linear_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4))
    trainer.train(0, 1)
    ckpt = trainer.save_checkpoint(tmp_path / "checkpoint_epoch_00001.pyth")
    same = torch.nn.Linear(4, 2)
    changed = torch.optim.SGD(same.parameters(), lr=0.1, momentum=0.5, weight_decay=1e-3, nesterov=True)
    with pytest.warns(UserWarning, match=r"momentum 0.9 -> 0.5, nesterov False -> True, weight_decay 0.0001 -> 0.001"):
        assert _linear_trainer(same, changed).resume(ckpt) == 1
    group = changed.param_groups[0]
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.5, 1e-3, True)
    assert changed.state  # the momentum buffers came along
    fine_tune = torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.1, momentum=0.8)
    with pytest.warns(UserWarning, match=r"momentum 0.9 -> 0.8"):
        assert load_optimizer_state(fine_tune, torch.load(ckpt, weights_only=True)["optimizer_state"], "ckpt.pyth")
    assert fine_tune.param_groups[0]["momentum"] == 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unchanged settings: no warning
        _linear_trainer(same, torch.optim.SGD(same.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-4)).resume(ckpt)


def test_nothing_to_train_is_said(synthetic, tmp_path, one_epoch):
    import shutil

    (tmp_path / "done" / "checkpoints").mkdir(parents=True)
    shutil.copy(one_epoch, tmp_path / "done" / "checkpoints")
    # A finished run started again: a warning, and the checkpoint it ended with.
    with pytest.warns(UserWarning, match=r"checkpoint is at epoch 1 >= SOLVER.MAX_EPOCH 1; nothing to train: raise SOLVER.MAX_EPOCH"):
        done = train(tiny_run(synthetic.root, tmp_path / "done", max_epoch=1), progress=False)
    assert done.checkpoints == [] and done.final_checkpoint == tmp_path / "done" / "checkpoints" / one_epoch.name
    # Fine-tuning from a checkpoint already at MAX_EPOCH would train nothing: an error, and nothing written.
    run = tiny_run(synthetic.root, tmp_path / "fine", max_epoch=1).replace(
        checkpoint=CheckpointConfig(period=1, train_path=str(one_epoch)))
    with pytest.raises(VidactError, match=r"checkpoint is at epoch 1 >= SOLVER.MAX_EPOCH 1; nothing to train: .*CHECKPOINT_EPOCH_RESET True"):
        train(run, progress=False)
    assert not (tmp_path / "fine").exists()


# -- configs and commands -------------------------------------------------------------------


def test_c3_train_parses_into_run_config():
    run = load_run_config(shared_path("configs", "pyslowfast", "fork", "c3_train.yaml"))
    assert run.train.dataset == "ava" and run.train.batch_size == 16 and run.checkpoint.period == 1
    assert run.solver.warmup_epochs == 34.0 and run.solver.max_epoch == 196 and run.train.loss == "bce"
    assert run.model.num_classes == 80 and run.model.detection.enable


def test_vidact_run_yaml_round_trips_with_opts(tmp_path):
    run = tiny_run(tmp_path / "data", tmp_path / "out")
    path = tmp_path / "run.yaml"
    dump_run_config(run, path)
    loaded = load_run_config(path)
    assert loaded.replace(source="") == run
    changed = load_run_config(path, ["solver.max_epoch", "7", "model.input.num_frames", "16"])
    assert changed.solver.max_epoch == 7 and changed.model.input.num_frames == 16
    path.write_text("vidact_run:\n  solver: {base_rate: 1}\n")
    with pytest.raises(VidactError, match="unknown key vidact_run.solver.base_rate"):
        load_run_config(path)
    path.write_text("vidact_run:\n  solver: {weight_decay: 5e-5, warmup_start_lr: 1e-3, base_lr: 1}\n")
    solver = load_run_config(path).solver  # YAML reads 5e-5 (no dot) as a string
    assert (solver.weight_decay, solver.warmup_start_lr, solver.base_lr) == (5e-5, 1e-3, 1.0)
    path.write_text("vidact_run:\n  solver: {base_lr: fast}\n")
    with pytest.raises(VidactError, match="vidact_run.solver.base_lr must be a number, got 'fast'"):
        load_run_config(path)
    # Files of earlier versions held settings that had no effect and are gone: they still load.
    path.write_text("vidact_run:\n  shard_id: 0\n  demo: {slowmo: 1, display_width: 0, enable: true}\n")
    with pytest.warns(UserWarning) as caught:
        assert load_run_config(path).demo.enable
    assert sorted(str(w.message).split(": ignored ")[1].split(" (")[0] for w in caught) == [
        "display_width, slowmo", "shard_id"]


def test_pyslowfast_kinetics_config_trains_and_tests_through_cli(synthetic, tmp_path, capsys):
    from vidact.cli.main import main

    cfg = shared_path("configs", "pyslowfast", "upstream", "configs", "Kinetics", "c2", "SLOWFAST_8x8_R50.yaml")
    opts = ["DATA.PATH_TO_DATA_DIR", str(synthetic.root), "OUTPUT_DIR", str(tmp_path), "NUM_GPUS", "0",
            "MODEL.NUM_CLASSES", "4", "RESNET.WIDTH_PER_GROUP", "4", "SLOWFAST.BETA_INV", "4",
            "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
            "DATA.NUM_FRAMES", "8", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "6", "SOLVER.MAX_EPOCH", "1", "DATA_LOADER.NUM_WORKERS", "0",
            "TEST.NUM_ENSEMBLE_VIEWS", "2"]
    assert main(["train", "--cfg", str(cfg), "--no-progress", "--opts", *opts]) == 0
    assert (tmp_path / "checkpoints" / "checkpoint_epoch_00001.pyth").is_file()
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vidact train: warning: ")]
    assert any("BN.USE_PRECISE_STATS" in line for line in warned)  # set in the file; one line each
    assert main(["test", "--cfg", str(cfg), "--opts", *opts]) == 0
    printed = capsys.readouterr().out
    assert '"top1_acc"' in printed and '"mean_class_acc"' in printed

    # As PySlowFast: with no TEST path and nothing trained in OUTPUT_DIR, test the TRAIN path's weights.
    fresh = [*opts, "OUTPUT_DIR", str(tmp_path / "fresh")]
    assert main(["test", "--cfg", str(cfg), "--opts", *fresh]) == 2
    assert "no checkpoint to test" in capsys.readouterr().err
    pretrained = tmp_path / "checkpoints" / "checkpoint_epoch_00001.pyth"
    assert main(["test", "--cfg", str(cfg), "--opts", *fresh, "TRAIN.CHECKPOINT_FILE_PATH", str(pretrained)]) == 0
    assert capsys.readouterr().out == printed  # the same weights, the same figures


def test_bad_list_file_is_one_line_error(tmp_path):
    (tmp_path / "train.csv").write_text("video.mp4 notalabel\n")
    run = tiny_run(tmp_path, tmp_path / "out")
    with pytest.raises(VidactError, match=r"train.csv:1: expected 'path label'"):
        train(run, progress=False)
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_data_ensemble_method_max_reaches_the_test_evaluator():
    from types import SimpleNamespace

    from vidact.engine.trainer import TASKS

    path = shared_path("configs", "pyslowfast", "fork", "c3_train.yaml")
    views = torch.tensor([[0.1, 0.0, 0.9], [0.45, 0.55, 0.0]])  # one video, two views, 3 classes
    batch = {"video_index": torch.tensor([0, 0]), "label": torch.tensor([0, 0])}
    top1 = {}
    for method in ("sum", "max"):
        run = load_run_config(path, ["DATA.ENSEMBLE_METHOD", method, "MODEL.NUM_CLASSES", "3"])
        assert run.test.ensemble_method == method
        evaluator = TASKS["kinetics"].build_evaluator(run, SimpleNamespace(views_per_video=2))
        evaluator.reset()
        evaluator.process(batch, views)
        top1[method] = evaluator.evaluate()["top1_acc"]
    assert top1 == {"sum": 0.0, "max": 0.0} or top1["sum"] != top1["max"]
    with pytest.raises(VidactError, match="DATA.ENSEMBLE_METHOD"):
        load_run_config(path, ["DATA.ENSEMBLE_METHOD", "mean"])


def test_register_task_keeps_built_in_names_unless_replaced(monkeypatch):
    from vidact.engine import trainer
    from vidact.engine.trainer import Task, get_task, register_task

    built_in = get_task("ava")
    monkeypatch.setattr(trainer, "TASKS", dict(trainer.TASKS))  # undone after the test
    mine = Task(build_dataset=None, build_evaluator=None)
    for name in ("ava", "kinetics"):
        with pytest.raises(VidactError, match=f"'{name}' is a task built into vidact; register yours under another name"):
            register_task(name, mine)
    assert get_task("ava") is built_in
    register_task("my_dataset", mine)
    assert get_task("my_dataset") is mine
    register_task("ava", mine, replace=True)
    assert get_task("ava") is mine


# -- progress of evaluation ---------------------------------------------------------------------


class _Terminal:
    """stderr as a terminal, so that tqdm shows its bar there."""

    def __init__(self) -> None:
        import io

        self.stream = io.StringIO()

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def isatty(self) -> bool:
        return True


def _test_config(synthetic, tmp_path):
    """A run YAML whose test pass is 4 batches: 4 videos x 2 views, 2 views a batch, LOG_PERIOD 2."""
    run = tiny_run(synthetic.root, tmp_path / "out").replace(
        log_period=2, test=TestConfig(batch_size=2, num_ensemble_views=2, num_spatial_crops=1))
    cfg = tmp_path / "run.yaml"
    dump_run_config(run, cfg)
    return run, cfg


@pytest.fixture
def recorded_bars(monkeypatch):
    """The tqdm bars made while the test runs, as they are when it ends."""
    import tqdm.auto

    bars = []

    class RecordedBar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordedBar)
    return bars


def test_vidact_test_shows_its_progress_as_training_does(synthetic, tmp_path, one_epoch, monkeypatch, caplog,
                                                         recorded_bars):
    import re

    from vidact.cli.main import main

    _, cfg = _test_config(synthetic, tmp_path)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    caplog.set_level("INFO", logger="vidact.train")
    assert main(["test", "--cfg", str(cfg), "--checkpoint", str(one_epoch)]) == 0
    assert [(bar.desc, bar.total, bar.n) for bar in recorded_bars] == [("test", 4, 4)]
    assert "%|" in terminal.getvalue()  # drawn on the terminal
    # Every LOG_PERIOD batches a line with the time left, for logs written to a file.
    lines = [message for message in caplog.messages if message.startswith("test batch")]
    assert [re.fullmatch(r"test batch (\d)/4, eta \d+:\d\d:\d\d", line).group(1) for line in lines] == ["2", "4"]


def test_vidact_test_no_progress_and_other_ranks_draw_nothing(synthetic, tmp_path, one_epoch, monkeypatch,
                                                              recorded_bars):
    from vidact.cli.main import main
    from vidact.engine import distributed as dist
    from vidact.engine.trainer import test

    run, cfg = _test_config(synthetic, tmp_path)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["test", "--cfg", str(cfg), "--checkpoint", str(one_epoch), "--no-progress"]) == 0
    monkeypatch.setattr(dist, "is_main_process", lambda: False)  # rank 1 of a DDP run: rank 0 shows it
    test(run, one_epoch, progress=True)
    assert terminal.getvalue() == ""
    assert [bar for bar in recorded_bars if not bar.disable] == []


def test_validation_in_training_shows_its_progress(synthetic, tmp_path, monkeypatch, caplog, recorded_bars):
    monkeypatch.setattr("sys.stderr", _Terminal())
    caplog.set_level("INFO", logger="vidact.train")
    run = tiny_run(synthetic.root, tmp_path, max_epoch=1).replace(log_period=1, test=TestConfig(batch_size=2))
    train(run, progress=True)
    # 4 validation videos, one view each, 2 a batch.
    assert [(bar.total, bar.n) for bar in recorded_bars if bar.desc == "val"] == [(2, 2)]
    assert [message.split(",")[0] for message in caplog.messages if message.startswith("val batch")] == [
        "val batch 1/2", "val batch 2/2"]


def test_testing_weights_of_another_number_of_classes_is_refused(tmp_path):
    """Scoring a test set with a fresh random head would report chance accuracy as the checkpoint's."""
    import dataclasses

    from vidact.config.pyslowfast import load_model_config
    from vidact.engine.trainer import test

    parity = shared_path("fixtures", "parity", "tiny_k400_slowfast")
    config = load_model_config(parity / "config.yaml")
    run = dataclasses.replace(tiny_run(tmp_path, tmp_path / "out"), model=config.replace(num_classes=3))
    with pytest.raises(VidactError, match="classifier has 10 classes, the config's MODEL.NUM_CLASSES 3"):
        test(run, parity / "model.pyth", progress=False)


def test_a_configured_checkpoint_that_is_no_file_is_named_by_its_key(tmp_path):
    """vidact test (and the Kinetics demo) said "weights takes None, 'default' or a checkpoint
    path", the Python API's words, for a TRAIN.CHECKPOINT_FILE_PATH the user never typed there."""
    import dataclasses

    from vidact.engine.checkpoint import demo_checkpoint
    from vidact.engine.trainer import test

    run = tiny_run(tmp_path, tmp_path / "out")
    for section, field in (("TRAIN", "train_path"), ("TEST", "test_path")):
        missing = dataclasses.replace(run, checkpoint=dataclasses.replace(run.checkpoint, **{field: "gone.pkl"}))
        with pytest.raises(VidactError, match=rf"^{section}.CHECKPOINT_FILE_PATH=gone.pkl: no such file"):
            demo_checkpoint(missing)
        with pytest.raises(VidactError, match=rf"^{section}.CHECKPOINT_FILE_PATH=gone.pkl: no such file"):
            test(missing, progress=False)
    with pytest.raises(VidactError, match=r"^nope.pyth: no such checkpoint file; check the path \(--checkpoint\)"):
        test(run, "nope.pyth", progress=False)
