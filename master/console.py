"""The interactive `master>` console, as in the original design, plus a few additions.

Commands work on the in-process master. Every error is one line; the console never
crashes on bad input.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
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

MAX_LINE_BYTES = 65536  # longer lines are refused unparsed (shlex is quadratic on them)
MAX_ECHO = 60  # at most this many characters of one user input are quoted back in an error
MAX_ERROR = 300  # and no error line is longer than this
HISTORY_FILE = "~/.cloudai_history"  # the terminal console's history, kept across sessions
HISTORY_LENGTH = 1000
CONSOLE_TASKS = 50  # `tasks` shows the newest this many (and says when there are more)
TASK_OPTIONS = ("--cpu", "--mem")
TASK_USAGE = "task <worker_id> <docker_image> [--cpu N] [--mem 512m] [-- CMD ARGS...]"
HELP = f"""\
Commands:
  help                              show this help
  status                            cluster summary
  workers                           list workers with capacity, load and health
  {TASK_USAGE}
                                    run an image on a given worker (manual override);
                                    everything after -- is the command, options too
  tasks [STATE]                     list the newest 50 tasks (optionally of one state)
  queue                             list the newest 50 pending tasks
  explain <task_id>                 why a task runs where it does, or why it waits
  cancel <task_id>                  cancel a queued or running task
  logs <task_id>                    show a task's logs
  exit                              shut the master down (also Ctrl-D)"""


class Console:
    def __init__(self, master: Master, out: TextIO = sys.stdout) -> None:
        self.m = master
        self.out = out
        self.commands: dict[str, Callable[[list[str]], None]] = {
            "help": self.help,
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
        read = self.reader(inp, "master> " if prompt else "")
        while True:
            try:
                line = read()
            except EOFError:
                self.say("")
                return self.EOF
            except (OSError, ValueError) as err:  # e.g. nohup's unreadable stdin
                self.say("")
                return f"cannot read stdin: {err}"
            if self.execute(line) is False:
                return self.EXIT

    def reader(self, inp: TextIO, prompt: str) -> Callable[[], str]:
        """What reads one line (EOFError at the end): input() with line editing and
        history on a terminal (stdin and stdout), a plain readline() on anything else."""
        if inp is sys.stdin and is_tty(inp) and is_tty(sys.stdout) and not _in_background(inp):
            return _terminal_reader(prompt)

        def read() -> str:
            if prompt:
                print(prompt, end="", file=self.out, flush=True)
            line = inp.readline()
            if not line:
                raise EOFError
            return line

        return read

    def execute(self, line: str) -> bool:
        """Run one command line. Returns False on `exit`."""
        size = _size(line)
        if size > MAX_LINE_BYTES:
            self.say(f"✗ line too long ({size} bytes; the limit is {MAX_LINE_BYTES})")
            return True
        try:  # the line's own end is no part of it: `workers\` escapes nothing
            args = shlex.split(line.rstrip("\r\n"))
        except ValueError as err:
            self.say(f"✗ cannot parse command: {err}")
            return True
        if not args:
            return True
        try:
            return self.dispatch(args[0].lower(), args[1:])
        except CloudAIError as err:
            self.say(f"✗ {_clip_echo(str(err), args)}")
        except Exception as err:  # the console must survive anything
            self.say(f"✗ internal error: {_clip_echo(f'{type(err).__name__}: {err}', args)}")
        return True

    def dispatch(self, cmd: str, rest: list[str]) -> bool:
        if cmd in ("exit", "quit"):
            return not _none(rest, cmd)
        handler = self.commands.get(cmd)
        if handler is None:
            raise CloudAIError(f"unknown command {_clip(cmd)!r}; type 'help'")
        handler(rest)
        return True

    def help(self, args: list[str]) -> None:
        _none(args, "help")
        self.say(HELP)

    def status(self, args: list[str]) -> None:
        _none(args, "status")
        self.say(views.status_panel(self.m.status()))

    def workers(self, args: list[str]) -> None:
        _none(args, "workers")
        self.say(views.workers_table([self.m.worker_info(e) for e in self.m.registry.all()]))

    def task(self, args: list[str]) -> None:
        spec = _parse_task_args(args)
        task = self.m.submit(spec)
        note = _options_in_command(spec.command)
        self.say(f"✓ task {task.id} submitted to {spec.pinned_worker} ({spec.image}){note}")

    def tasks(self, args: list[str]) -> None:
        if len(args) > 1:
            raise CloudAIError("usage: tasks [STATE]")
        self._newest([_state(args[0])] if args else None)

    def queue(self, args: list[str]) -> None:
        _none(args, "queue")
        self._newest([TaskState.PENDING])

    def _newest(self, states: list[TaskState] | None) -> None:
        """The newest CONSOLE_TASKS tasks in `states`, saying when there are more."""
        tasks = self.m.store.list_tasks(states=states, limit=CONSOLE_TASKS + 1)
        table = views.tasks_table([task_to_pb(t) for t in tasks[-CONSOLE_TASKS:]])
        note = f"\n(the newest {CONSOLE_TASKS} shown: `cloudai tasks --limit N` lists more)"
        self.say(table + (note if len(tasks) > CONSOLE_TASKS else ""))

    def explain(self, args: list[str]) -> None:
        task = self.m.tasks.get(_one(args, "explain <task_id>"))
        self.say(explain_text(task, self.m.store.list_decisions(task.id)))

    def cancel(self, args: list[str]) -> None:
        task, message = self.m.cancel(_one(args, "cancel <task_id>"))
        self.say(f"✓ task {task.id}: {message}")

    def logs(self, args: list[str]) -> None:
        """The output as it is (blank lines too), and the master's notes about it (a
        worker that did not answer) on lines of their own, as `cloudai logs` does."""
        task_id = _one(args, "logs <task_id>")
        at_line_start = True
        for chunk in self.m.stream_logs(task_id, False, 0, lambda: True):
            if chunk.data:
                self.out.write(chunk.data)
                at_line_start = chunk.data.endswith("\n")
            if chunk.notice:
                self.out.write("" if at_line_start else "\n")
                self.out.write(f"⚠ {chunk.notice}\n")
                at_line_start = True
        self.out.write("" if at_line_start else "\n")
        self.out.flush()


def _terminal_reader(prompt: str) -> Callable[[], str]:
    """input() with GNU readline: arrow keys, Ctrl-L, and a history kept (0600) in
    HISTORY_FILE when that can be read and written; without it, history for the session."""
    import readline  # importing it gives input() line editing

    # Sent to the background (Ctrl-Z, bg), the master must still get out of readline (on
    # SIGTERM, or when its read fails): readline then resets the terminal, and SIGTTOU
    # would stop it for good. Like SIGTTIN (ignored by `cloudai master`), it is ignored.
    with contextlib.suppress(ValueError):  # not the main thread: the caller's business
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    path = os.path.expanduser(HISTORY_FILE)
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)

    def read() -> str:
        try:
            line = input(prompt)
        except EOFError:  # a job put in the background (Ctrl-Z, bg) cannot read: no EOF
            if _in_background(sys.stdin):
                raise OSError("the console's terminal went to another job") from None
            raise
        last = readline.get_current_history_length()
        if _size(line) > MAX_LINE_BYTES and last:  # a refused line is not worth recalling
            readline.remove_history_item(last - 1)
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            readline.write_history_file(path)
        return line

    return read


def is_tty(inp: TextIO) -> bool:
    try:
        return inp.isatty()
    except (OSError, ValueError):
        return False


def _in_background(inp: TextIO) -> bool:
    """Started with `&` from an interactive shell: reading the terminal fails (SIGTTIN is
    ignored) and readline's terminal setup would stop the master with SIGTTOU."""
    try:
        return os.tcgetpgrp(inp.fileno()) != os.getpgrp()
    except (OSError, ValueError):  # not our controlling terminal: no job control
        return False


def _clip(text: str, limit: int = MAX_ECHO) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _clip_echo(message: str, args: list[str]) -> str:
    """The error message with every long user input in it cut to MAX_ECHO characters."""
    for arg in sorted((a for a in args if len(a) > MAX_ECHO), key=len, reverse=True):
        message = message.replace(repr(arg), repr(_clip(arg))).replace(arg, _clip(arg))
    return _clip(message, MAX_ERROR)


def _size(line: str) -> int:
    return len(line.rstrip("\r\n").encode("utf-8", "surrogatepass"))


def _options_in_command(command: list[str]) -> str:
    """A note for the success line when the command holds one of `task`'s own options
    (they were typed after --, so they went to the command, not to `task`)."""
    words = {a.split("=")[0] for a in command}
    found = [option for option in TASK_OPTIONS if option in words]
    if not found:
        return ""
    verb = "is" if len(found) == 1 else "are"
    return f"; note: {', '.join(found)} after -- {verb} part of the command"


def _none(args: list[str], usage: str) -> bool:
    if args:
        raise CloudAIError(f"usage: {usage} (no arguments)")
    return True


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
    (worker, image), opts, command = _split_task_args(args)
    if not worker:  # an empty pin is no pin: the task would go anywhere
        raise CloudAIError(f"the worker id is empty; usage: {TASK_USAGE}")
    spec = TaskSpec(image=validate_image(image), command=command, pinned_worker=worker)
    try:
        spec.resources.cpu = float(opts["--cpu"])
    except ValueError as err:
        raise CloudAIError(f"invalid --cpu {_clip(opts['--cpu'])!r}") from err
    spec.resources.memory_bytes = parse_size(opts["--mem"])
    return validate_spec(spec)


def _split_task_args(args: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """`task`'s two positional arguments, its options (`--cpu 2` or `--cpu=2`) and the
    command after `--`. Any other option is refused, not taken for a worker or image."""
    command: list[str] = []
    if "--" in args:
        i = args.index("--")
        args, command = args[:i], args[i + 1 :]
    opts = dict.fromkeys(TASK_OPTIONS, "0")
    positional = []
    it = iter(args)
    for a in it:
        name, eq, value = a.partition("=")
        if name in opts:
            given = value if eq else next(it, None)
            if given is None:
                raise CloudAIError(f"{name} needs a value; usage: {TASK_USAGE}")
            opts[name] = given
        elif a.startswith("-") and a != "-":  # no worker id or image starts with "-"
            raise CloudAIError(f"unknown option {_clip(name)!r}; usage: {TASK_USAGE}")
        else:
            positional.append(a)
    if len(positional) != 2:
        raise CloudAIError(f"usage: {TASK_USAGE}")
    return positional, opts, command
