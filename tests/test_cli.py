import json
import subprocess
import sys

import pytest

from conftest import shared_path

from vidact.cli.main import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exit:
        assert exit.code == 0
    assert "vidact" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "vidact.cli.main", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: vidact" in done.stdout


def test_output_piped_into_head_still_writes_the_files(tmp_path):
    # A table larger than a pipe's buffer, so that printing it meets the closed pipe.
    names = [f"action {number:04d} with a name long enough to fill the pipe" for number in range(1, 1501)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "gt.csv").write_text("v,0902,0.1,0.1,0.4,0.9,1,0\n")
    (tmp_path / "pred.csv").write_text("v,0902,0.1,0.1,0.4,0.9,1,0.9\n")
    report = tmp_path / "map.json"
    command = [sys.executable, "-m", "vidact.cli.main", "eval-ava", "--gt", "gt.csv", "--pred", "pred.csv",
               "--labelmap", "labels.txt", "--json", str(report)]
    with subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        assert child.stdout.readline().split()[:2] == ["id", "class"]
        child.stdout.close()  # like `| head -1`
        stderr = child.stderr.read()
        assert child.wait(timeout=60) == 0, stderr
    assert stderr == ""
    classes = json.loads(report.read_text())["classes"]
    assert len(classes) == 1500 and classes[0]["ap"] == 1.0


def test_an_option_after_opts_is_named(capsys):
    cfg = str(shared_path("configs", "pyslowfast", "fork", "c3_train.yaml"))
    for command in ("train", "test"):
        assert main([command, "--cfg", cfg, "--opts", "NUM_GPUS", "0", "--no-progress"]) == 2
        assert capsys.readouterr().err == (
            f"vidact {command}: error: --opts: '--no-progress' looks like an option of vidact {command}: "
            "put --opts last on the line\n"
        )


def test_starting_the_cli_does_not_import_torch():
    # Ctrl-C is only caught once main() runs: torch's seconds-long import must come after, not in `import vidact`.
    code = ("import sys, vidact.cli.main, vidact; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert sorted(vidact.__all__) == sorted(n for n in dir(vidact) if n in vidact.__all__); "
            "[getattr(vidact, name) for name in vidact.__all__]; assert 'torch' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_public_api_imports_from_the_package():
    import vidact
    import vidact.api
    from vidact import VidactError, __version__, classify, create_model, detect, list_models
    from vidact.errors import VidactError as error_class

    assert (classify, create_model, detect, list_models) == (
        vidact.api.classify, vidact.api.create_model, vidact.api.detect, vidact.api.list_models
    )
    assert VidactError is error_class and __version__ == vidact.__version__
    with pytest.raises(AttributeError, match="no_such_name"):
        vidact.no_such_name  # noqa: B018
