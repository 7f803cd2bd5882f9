"""CLI contract tests that need no Docker: errors are one line, exit codes are right."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "command",
    [
        ["workers"],
        ["status"],
        ["tasks"],
        ["task", "t-1"],
        ["logs", "t-1"],
        ["explain", "t-1"],
        ["cancel", "t-1"],
        ["submit", "alpine"],
    ],
)
def test_client_against_down_master_is_one_line_exit_2(command):
    out = run(*command, "--master", "127.0.0.1:1")
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "cannot reach the CloudAI master" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["submit", "Bad Image"], "invalid image reference"),
        (["submit", "alpine", "--env", "NOEQUALS"], "malformed --env"),
        (["submit", "alpine", "--selector", "=x"], "malformed --selector"),
        (["submit", "alpine", "--cpu", "-1"], "cpu request must be >= 0"),
        (["submit", "alpine", "--memory", "lots"], "invalid size"),
        (["submit", "alpine", "--gpu", "1.5"], "fractions are allowed only below 1"),
        (["submit", "alpine", "--timeout", "soon"], "invalid duration"),
        (["tasks", "--state", "bogus"], "unknown state"),
    ],
)
def test_bad_input_is_rejected_before_contacting_the_master(args, message):
    out = run(*args, "--master", "127.0.0.1:1")
    assert out.returncode == 1, out
    assert message in out.stderr and "Traceback" not in out.stderr


def test_help_explains_every_command():
    out = run("--help")
    for cmd in (
        "master",
        "worker",
        "agent",
        "submit",
        "status",
        "workers",
        "tasks",
        "task",
        "explain",
        "logs",
        "cancel",
        "demo",
        "bench",
    ):
        assert cmd in out.stdout


def test_version_prints_the_package_version_and_exits_0():
    """`cloudai --version`, as users of any CLI expect (there was none)."""
    from cloudai import __version__

    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"cloudai {__version__}\n"


def _commands(group, path=()):
    """(command path, callback) of every command of a typer app, groups included."""
    for info in group.registered_commands:
        yield (*path, info.name or info.callback.__name__), info.callback
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance, (*path, sub.name))


def test_every_command_summary_is_one_line():
    """A listing (`cloudai --help`, `cloudai bench --help`) shows each command's first
    paragraph; a line break inside it showed as a broken row ("one batch of" / ...)."""
    from cloudai.cli.main import app

    seen = dict(_commands(app))
    assert {("submit",), ("tasks",), ("sim", "run"), ("bench", "placement")} <= set(seen)
    for name, callback in seen.items():
        first = (callback.__doc__ or "").strip().split("\n\n")[0]
        assert first and "\n" not in first, f"cloudai {' '.join(name)}: {first!r}"
