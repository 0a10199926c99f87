import subprocess
import sys

from click.testing import CliRunner

from cephalo.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


def test_unknown_subcommand_is_usage_error_exit_2():
    proc = subprocess.run([sys.executable, "-m", "cephalo", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no-such-command" in proc.stderr


def test_every_subcommand_has_help_and_params_option():
    runner = CliRunner()
    for name in SUBCOMMANDS:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "--params" in result.output, f"{name} must take --params"


def test_missing_params_file_is_one_line_error_exit_1(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cephalo",
            "make-demo",
            "--out",
            str(tmp_path / "d"),
            "--params",
            str(tmp_path / "nope.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "nope.yaml" in proc.stderr
