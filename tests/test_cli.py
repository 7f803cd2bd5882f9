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


def _options(command, path=("cloudai",)):
    """(command path, click option) of every option of a click command, groups included."""
    for param in command.params:
        if param.param_type_name == "option":
            yield " ".join(path), param
    for name, sub in getattr(command, "commands", {}).items():
        yield from _options(sub, (*path, name))


def test_every_option_says_what_it_does():
    """`--help` explains each option: `token list --json` had an empty help cell."""
    import typer.main

    from cloudai.cli.main import app

    missing = [
        f"{path} {'/'.join(opt.opts)}"
        for path, opt in _options(typer.main.get_command(app))
        if not (opt.help or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("command", [["list"], ["revoke", "abc123"]])
def test_token_list_and_revoke_never_create_the_tokens_file(tmp_path, command):
    """Only `token create` creates the file; the others' --file help said it did too."""
    tokens = tmp_path / "tokens.json"
    out = run("token", *command, "--file", str(tokens))
    assert out.returncode == 1, out
    assert out.stderr.startswith("cloudai: ") and "Traceback" not in out.stderr
    assert not tokens.exists()
    import typer.main

    from cloudai.cli.main import app

    token = typer.main.get_command(app).commands["token"]
    [file_opt] = [p for p in token.commands[command[0]].params if p.name == "file"]
    assert "created" not in file_opt.help


def test_demo_needs_at_least_one_worker():
    """With no worker the sample task would wait for ever: refused before anything starts."""
    out = run("demo", "--workers", "0")
    assert out.returncode == 1, out
    assert out.stderr.count("\n") == 1 and "--workers" in out.stderr


def test_bench_reads_a_toml_profile(tmp_path):
    """`bench placement --profile` takes a TOML profile file too, as its help says."""
    from cloudai.agent.policy.profiles import BUILTIN_PROFILES, save_profile

    path = save_profile(BUILTIN_PROFILES["spread"], tmp_path / "mine.toml")
    out = run("bench", "placement", "--workers", "5", "--tasks", "10", "--profile", str(path))
    assert out.returncode == 0, out.stderr
    assert "profile: spread" in out.stdout
    assert "TOML" in run("bench", "placement", "--help").stdout


def test_labels_from_the_environment_that_are_not_json_are_one_line():
    """CLOUDAI_LABELS is a JSON object; `zone=a` there was a pydantic-settings traceback."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    out = subprocess.run(
        [sys.executable, "-m", "cloudai", "worker", "--master", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "CLOUDAI_LABELS": "zone=a"},
    )
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("cloudai: ") and '"labels"' in line and "JSON" in line
