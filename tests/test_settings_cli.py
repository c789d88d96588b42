"""Configuration from VOP_* variables and flags; CLI help and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.cli import build_parser
from app.settings import SettingsError, settings_from


def test_env_and_flags_agree_flags_win() -> None:
    s = settings_from(
        {"VOP_PORT": "9000", "VOP_WORKERS": "3", "VOP_PSP_BICS": "abcddeff, VOPBDEFFXXX"}, workers=2
    )
    assert s.port == 9000
    assert s.workers == 2
    assert s.psp_bics == ("ABCDDEFF", "VOPBDEFFXXX")


def test_unset_flags_fall_through_to_env() -> None:
    assert settings_from({"VOP_HOST": "::1"}, host=None).host == "::1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOP_PORT": "eighty"}, "VOP_PORT must be an integer"),
        ({"VOP_PORT": "0"}, "VOP_PORT must be 1-65535"),
        ({"VOP_WORKERS": "0"}, "VOP_WORKERS"),
        ({"VOP_PSP_BICS": " , "}, "VOP_PSP_BICS"),
        ({"VOP_INTERFACE": "wsgi"}, "VOP_INTERFACE must be rsgi or asgi"),
        ({"VOP_RUNTIME_MODE": "fast"}, "VOP_RUNTIME_MODE must be auto, st or mt"),
        ({"VOP_LOOP": "trio"}, "VOP_LOOP must be uvloop or asyncio"),
        ({"VOP_RUNTIME_THREADS": "0"}, "VOP_RUNTIME_THREADS"),
        ({"VOP_BACKLOG": "0"}, "VOP_BACKLOG"),
        ({"VOP_BACKPRESSURE": "-1"}, "VOP_BACKPRESSURE"),
    ],
)
def test_bad_settings_are_one_readable_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from(env)


def test_every_command_has_help() -> None:
    parser = build_parser()
    for command in ("serve", "demo-data", "eval"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([command, "--help"])
        assert exc.value.code == 0


def test_bad_env_gives_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env={"VOP_PORT": "x", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "vop: error: VOP_PORT must be an integer, got 'x'"


def test_eval_missing_file_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "eval", "/nonexistent.csv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "cases file not found" in out.stderr


def test_serve_has_a_flag_for_every_setting_but_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    import msgspec

    from app.security.settings import SecuritySettings
    from app.settings import Settings

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = capsys.readouterr().out
    for field in [*msgspec.structs.fields(Settings), *msgspec.structs.fields(SecuritySettings)]:
        flag = "--" + field.name.replace("_", "-")
        if field.name == "audit_key":
            assert flag not in help_text  # secrets never on a command line
        else:
            assert flag in help_text
            assert f"VOP_{field.name.upper()}" in help_text


def test_a_bad_flag_value_is_reported_as_its_variable() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == "vop: error: VOP_PORT must be an integer, got 'x'"
