"""QA pass 8, the client CLI as a real `cloudai` process against a real master (in
process, real gRPC over loopback, fake workers):

- `submit --worker ""` (e.g. `--worker "$W"` with W unset) submitted an unpinned task
  that could run anywhere;
- `submit --env K=V --secret-env K=S` dropped the --env value without a word;
- `task ID` showed the command joined with spaces: `sh -c echo "a b"; exit 3` read as
  `sh -c echo` (its argument boundaries were lost);
- `cloudai --help` listed `logs` with its whole docstring, broken mid-sentence.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cloudai.model import TaskSpec

IMAGE = "cloudai/sample-task:latest"


def cloudai(*args: str, master: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    extra = ["--master", master] if master else []
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def one_line_exit_1(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 1, out
    assert out.stdout == "" and "Traceback" not in out.stderr, out
    [line] = out.stderr.splitlines()
    return line


@pytest.mark.parametrize("pin", ["", "  "])
def test_submit_with_an_empty_worker_is_refused_and_queues_nothing(h, pin):
    h.add_worker("w1")
    out = cloudai("submit", IMAGE, "--worker", pin, master=f"127.0.0.1:{h.master.port}")
    line = one_line_exit_1(out)
    assert line == "cloudai: --worker is empty: name a worker, or leave --worker out"
    assert h.master.store.list_tasks() == []


def test_submit_without_worker_is_still_unpinned(h):
    out = cloudai("submit", IMAGE, "--json", master=f"127.0.0.1:{h.master.port}")
    assert out.returncode == 0, out
    [task] = h.master.store.list_tasks()
    assert task.spec.pinned_worker == ""


def test_a_variable_given_as_env_and_as_secret_env_is_refused(h):
    address = f"127.0.0.1:{h.master.port}"
    out = cloudai("submit", IMAGE, "--env", "PW=x", "--secret-env", "PW=hunter2", master=address)
    line = one_line_exit_1(out)
    assert line == "cloudai: 'PW' is given both as --env and as --secret-env"
    assert h.master.store.list_tasks() == []


def test_task_shows_the_command_with_its_arguments_quoted(h):
    command = ["sh", "-c", 'echo "a b"; exit 3', "it's"]
    task = h.master.submit(TaskSpec(image=IMAGE, command=command))
    out = cloudai("task", task.id, master=f"127.0.0.1:{h.master.port}")
    assert out.returncode == 0, out
    [row] = [ln for ln in out.stdout.splitlines() if "command" in ln]
    shown = row.strip("│ ").removeprefix("command").strip()
    assert shown == """sh -c 'echo "a b"; exit 3' 'it'"'"'s'""", row


def test_the_command_list_gives_logs_one_summary():
    out = cloudai("--help")
    assert out.returncode == 0, out
    [start] = [i for i, ln in enumerate(out.stdout.splitlines()) if "│ logs " in ln]
    block = "\n".join(out.stdout.splitlines()[start : start + 3])
    assert "Print a task's logs" in block and "--follow" not in block, block


@pytest.mark.parametrize(
    ("option", "value", "start"),
    [
        ("--env", "K" * 5000 + "=v", "cloudai: invalid environment variable name 'KKK"),
        ("--selector", "k" * 5000 + "=v", "cloudai: invalid selector key 'kkk"),
        ("--selector", "k=" + "v" * 5000, "cloudai: invalid selector value 'vvv"),
    ],
)
def test_an_error_quoting_a_huge_input_is_one_short_line(option, value, start):
    """It quoted all 5,000 characters back; checked before any dialling (exit 1)."""
    line = one_line_exit_1(cloudai("submit", IMAGE, option, value, master="127.0.0.1:1"))
    assert line.startswith(start) and "…'" in line, line[:300]
    assert len(line) < 250, len(line)


def test_drain_of_an_inactive_worker_says_it_applies_when_it_registers_again(h):
    """`drain W` of a worker that had shut down printed `✓ W is inactive`, as if the
    drain had been refused or done nothing; it is kept for the worker's return."""
    w1 = h.add_worker("w1")
    master = f"127.0.0.1:{h.master.port}"
    h.master.registry.leave("w1")
    out = cloudai("drain", "w1", master=master)
    assert out.returncode == 0, out
    want = "✓ w1 is inactive: it will be draining when it registers again (until this "
    assert out.stdout == want + "master restarts)\n", out
    h.register(w1)
    assert h.master.registry.get("w1").record.health.value == "DRAINING"
    out = cloudai("drain", "w1", "--undo", master=master)
    assert out.stdout == "✓ w1 is active\n", out


def test_tasks_says_when_it_shows_only_the_newest(h):
    """`tasks` listed the newest --limit (100 by default) without a word that there
    were more, so a long queue looked complete."""
    import json

    ids = [h.master.submit(TaskSpec(image=IMAGE, command=["true"])).id for _ in range(3)]
    master = f"127.0.0.1:{h.master.port}"
    out = cloudai("tasks", "--limit", "2", master=master)
    assert out.returncode == 0, out
    assert ids[0] not in out.stdout and ids[1] in out.stdout and ids[2] in out.stdout
    assert out.stdout.endswith("\n(the newest 2 shown: there are more; --limit N shows more)\n")
    listed = json.loads(cloudai("tasks", "--limit", "2", "--json", master=master).stdout)
    assert [t["id"] for t in listed] == ids[1:]  # oldest first, and JSON only
    out = cloudai("tasks", "--limit", "3", master=master)
    assert "there are more" not in out.stdout and all(i in out.stdout for i in ids)
