"""The interactive `master>` console, as in the original design, plus a few additions.

Commands work on the in-process master. Every error is one line; the console never
crashes on bad input.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import TextIO

from cloudai.cli import views
from cloudai.convert import task_to_pb
from cloudai.errors import CloudAIError
from cloudai.model import TaskSpec, TaskState
from cloudai.validation import parse_size, validate_image, validate_spec

from .explain import explain_text
from .server import Master

HELP = """\
Commands:
  help                              show this help
  status                            cluster summary
  workers                           list workers with capacity, load and health
  task <worker_id> <docker_image> [-- CMD ARGS...] [--cpu N] [--mem 512m]
                                    run an image on a given worker (manual override)
  tasks [STATE]                     list recent tasks (optionally only one state)
  queue                             list pending tasks
  explain <task_id>                 why a task runs where it does, or why it waits
  cancel <task_id>                  cancel a queued or running task
  logs <task_id>                    show a task's logs
  exit                              shut the master down (also Ctrl-D)"""


class Console:
    def __init__(self, master: Master, out: TextIO = sys.stdout) -> None:
        self.m = master
        self.out = out
        self.commands: dict[str, Callable[[list[str]], None]] = {
            "help": lambda a: self.say(HELP),
            "status": self.status,
            "workers": self.workers,
            "task": self.task,
            "tasks": self.tasks,
            "queue": self.queue,
            "explain": self.explain,
            "cancel": self.cancel,
            "logs": self.logs,
        }

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    EXIT = "exit"
    EOF = "eof"

    def run(self, inp: TextIO = sys.stdin, prompt: bool = True) -> str:
        """Read commands until `exit` (returns EXIT), the end of input (EOF: Ctrl-D on a
        terminal) or a read error (returns what went wrong)."""
        while True:
            if prompt:
                print("master> ", end="", file=self.out, flush=True)
            try:
                line = inp.readline()
            except (OSError, ValueError) as err:  # e.g. nohup's unreadable stdin
                self.say("")
                return f"cannot read stdin: {err}"
            if not line:
                self.say("")
                return self.EOF
            if self.execute(line) is False:
                return self.EXIT

    def execute(self, line: str) -> bool:
        """Run one command line. Returns False on `exit`."""
        try:
            args = shlex.split(line)
        except ValueError as err:
            self.say(f"✗ cannot parse command: {err}")
            return True
        if not args:
            return True
        cmd, rest = args[0].lower(), args[1:]
        if cmd in ("exit", "quit"):
            return False
        handler = self.commands.get(cmd)
        if handler is None:
            self.say(f"✗ unknown command {cmd!r}; type 'help'")
            return True
        try:
            handler(rest)
        except CloudAIError as err:
            self.say(f"✗ {err}")
        except Exception as err:  # the console must survive anything
            self.say(f"✗ internal error: {type(err).__name__}: {err}")
        return True

    def status(self, args: list[str]) -> None:
        self.say(views.status_panel(self.m.status()))

    def workers(self, args: list[str]) -> None:
        self.say(views.workers_table([self.m.worker_info(e) for e in self.m.registry.all()]))

    def task(self, args: list[str]) -> None:
        spec = _parse_task_args(args)
        task = self.m.submit(spec)
        self.say(f"✓ task {task.id} submitted to {spec.pinned_worker} ({spec.image})")

    def tasks(self, args: list[str]) -> None:
        if len(args) > 1:
            raise CloudAIError("usage: tasks [STATE]")
        states = [_state(args[0])] if args else None
        tasks = self.m.store.list_tasks(states=states, limit=50)
        self.say(views.tasks_table([task_to_pb(t) for t in tasks]))

    def queue(self, args: list[str]) -> None:
        tasks = self.m.store.list_tasks(states=[TaskState.PENDING])
        self.say(views.tasks_table([task_to_pb(t) for t in tasks]))

    def explain(self, args: list[str]) -> None:
        task = self.m.tasks.get(_one(args, "explain <task_id>"))
        self.say(explain_text(task, self.m.store.list_decisions(task.id)))

    def cancel(self, args: list[str]) -> None:
        task, message = self.m.cancel(_one(args, "cancel <task_id>"))
        self.say(f"✓ task {task.id}: {message}")

    def logs(self, args: list[str]) -> None:
        task_id = _one(args, "logs <task_id>")
        for chunk in self.m.stream_logs(task_id, False, 0, lambda: True):
            if chunk.data:
                self.say(chunk.data.rstrip("\n"))


def _state(name: str) -> TaskState:
    try:
        return TaskState(name.upper())
    except ValueError:
        valid = ", ".join(s.value for s in TaskState)
        raise CloudAIError(f"unknown state {name!r}; use one of {valid}") from None


def _one(args: list[str], usage: str) -> str:
    if len(args) != 1:
        raise CloudAIError(f"usage: {usage}")
    return args[0]


def _parse_task_args(args: list[str]) -> TaskSpec:
    usage = "usage: task <worker_id> <docker_image> [-- CMD ARGS...] [--cpu N] [--mem 512m]"
    command: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, command = args[:i], args[i + 1 :]
    opts = {"--cpu": "0", "--mem": "0"}
    positional = []
    it = iter(args)
    for a in it:
        if a in opts:
            opts[a] = next(it, "")
        else:
            positional.append(a)
    if len(positional) != 2:
        raise CloudAIError(usage)
    worker, image = positional
    spec = TaskSpec(image=validate_image(image), command=command, pinned_worker=worker)
    try:
        spec.resources.cpu = float(opts["--cpu"])
    except ValueError as err:
        raise CloudAIError(f"invalid --cpu {opts['--cpu']!r}") from err
    spec.resources.memory_bytes = parse_size(opts["--mem"])
    return validate_spec(spec)
