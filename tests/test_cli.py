import subprocess
import sys

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
