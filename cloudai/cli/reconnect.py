"""Riding out a master that goes away while a client waits on a task it already
submitted (`submit --wait`, `submit --follow`, `logs --follow`).

A master restarted on the same store keeps the task and its workers finish it, so
the client retries an unreachable master (UNAVAILABLE, DEADLINE_EXCEEDED) or a
dropped log stream for up to `Client.reconnect` seconds (CLOUDAI_RECONNECT, 60 by
default), with one line on stderr when it starts and one when it is back. Past
that bound it exits 2 with the usual line, as before.

The log API has no offset to resume from. A resumed stream replays the attempt it
follows from its start (or its last --tail lines, or the stored log once the task
has ended), and the client drops what it printed already: it remembers how much of
the attempt it printed and its last 64 KiB, skips that much of a full replay, and
otherwise matches the replay's start against the end of what it printed. Output of
an attempt that ended while the master was away, beyond the stored tail, is lost.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import grpc

from cloudai import rpc
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb

from .client import EXIT_UNREACHABLE, Client, describe_error, fail

RETRIABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A master stopping cancels its streams: for a stream, that is a drop too.
STREAM_RETRIABLE = (*RETRIABLE, grpc.StatusCode.CANCELLED)
RETRY_EVERY_S = 0.5
WINDOW = 64 * 1024  # what a resumed stream is matched against (the stored log tail)


def say(text: str) -> None:
    print(f"cloudai: {text}", file=sys.stderr, flush=True)


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    return err.code() if hasattr(err, "code") else None


class Patience:
    """Retries calls while the master is unreachable, for a bounded time per outage."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seconds = client.reconnect
        self._since: float | None = None  # when the current outage began

    def call(self, method: str, request: Any) -> Any:
        """The call's answer, once the master answers; exit 2 past the bound."""
        while True:
            try:
                answer = self.client.raw_call(method, request, timeout=self._timeout())
            except grpc.RpcError as err:
                if _code(err) not in RETRIABLE:
                    self.client.fail_with(err)
                self.lost(describe_error(err, self.client.target), store=rpc.store_failed(err))
                continue
            self.back()
            return answer

    def lost(self, why: str, *, store: bool = False) -> None:
        """The master is away (or, `store`, answers that its store fails, as `why`
        says): pause before the next try, or give up (exit 2)."""
        if self.seconds <= 0:
            fail(why, EXIT_UNREACHABLE)
        now = time.monotonic()
        if self._since is None:
            self._since = now
            what = why if store else f"master at {self.client.target} unreachable"
            say(f"{what}; retrying for up to {self.seconds:g}s")
        elif now - self._since >= self.seconds:
            fail(f"{why} (gave up after {self.seconds:g}s)", EXIT_UNREACHABLE)
        time.sleep(RETRY_EVERY_S)

    def back(self) -> None:
        if self._since is not None:
            self._since = None
            say("reconnected")

    def _timeout(self) -> float:
        """The call timeout, cut so that a hung master does not outlast the bound."""
        if self._since is None:
            return self.client.timeout
        left = self.seconds - (time.monotonic() - self._since)
        return max(1.0, min(self.client.timeout, left))


@dataclass
class Seen:
    """What a followed stream printed of the attempt it follows: how many characters,
    the last WINDOW of them, and whether from the attempt's start (not a --tail)."""

    whole: bool
    count: int = 0
    window: str = ""

    def add(self, text: str) -> None:
        self.count += len(text)
        self.window = (self.window + text)[-WINDOW:]


class Replay:
    """Filters a resumed stream: feed() gives back only what was not printed yet."""

    def __init__(self, seen: Seen) -> None:
        # A full replay repeats what came before the window unchanged: skipped unread.
        self._skip = seen.count - len(seen.window) if seen.whole else 0
        self._expect = seen.window
        self._held = ""
        self._fed = False
        self.active = bool(seen.window)

    def feed(self, data: str, last: bool) -> str:
        """`last`: the replay ends here (a notice, or the stream's end follows)."""
        if not self.active:
            return data
        if self._skip and last and not self._fed:
            self._skip = 0  # the stored log in one chunk, perhaps cut: matched below
        self._fed = True
        if self._skip:
            n = min(self._skip, len(data))
            self._skip, data = self._skip - n, data[n:]
        self._held += data
        expect, held = self._expect, self._held
        if not last and len(held) < len(expect) and expect.startswith(held):
            return ""  # still what was printed before
        self.active = False
        self._held = ""
        if held.startswith(expect):
            return held[len(expect) :]
        if expect.startswith(held):
            return ""
        return held[overlap(expect, held) :]


def overlap(seen: str, new: str) -> int:
    """The length of the longest start of `new` that `seen` ends with (KMP)."""
    pattern = new[: len(seen)]
    if not pattern:
        return 0
    border = [0] * len(pattern)
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = border[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        border[i] = k
    k = 0
    # As many characters as the pattern: a whole match can only end on the last one.
    for ch in seen[-len(pattern) :]:
        while k and ch != pattern[k]:
            k = border[k - 1]
        if ch == pattern[k]:
            k += 1
    return k


class LogFollower:
    """Prints a followed log stream to `out`, resuming it across master restarts."""

    def __init__(self, client: Client, task_id: str, tail: int, out: TextIO) -> None:
        self.client, self.task_id, self.tail, self.out = client, task_id, tail, out
        self.patience = Patience(client)
        self.seen = Seen(whole=tail == 0)
        self.replay: Replay | None = None
        self.open_line = False  # the last text written did not end its line

    def run(self) -> None:
        while True:
            request = cpb.LogsRequest(
                task_id=self.task_id, follow=True, tail_lines=0 if self.seen.whole else self.tail
            )
            try:
                if self._relay(self.client.raw_stream("StreamLogs", request)):
                    self._write("\n" if self.open_line else "")  # what follows starts a line
                    return
                why = f"the CloudAI master at {self.client.target} ended the log stream early"
                store = False
            except grpc.RpcError as err:
                if _code(err) not in STREAM_RETRIABLE:
                    self.client.fail_with(err)
                why = describe_error(err, self.client.target, streamed=True)
                store = rpc.store_failed(err)
            self.patience.lost(why, store=store)
            self.patience.call("GetTask", cpb.GetTaskRequest(task_id=self.task_id))
            self.replay = Replay(self.seen)

    def _relay(self, chunks: Any) -> bool:
        """Print the stream's chunks; True once it ended with the task (eof)."""
        for chunk in chunks:
            if chunk.data or chunk.eof:
                self._write(self._fresh(chunk.data, chunk.eof))
            if chunk.notice:
                self._write(self._fresh("", True))  # the followed attempt ended
                notice(chunk)
                self.seen = Seen(whole=True)  # the next attempt's output is all new
            if chunk.eof:
                return True
        return False

    def _fresh(self, data: str, last: bool) -> str:
        if self.replay is None:
            return data
        text = self.replay.feed(data, last)
        if not self.replay.active:
            self.replay = None
        return text

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self.seen.add(text)
            self.open_line = not text.endswith("\n")


def notice(chunk: pb.LogChunk) -> None:
    """A line about the stream itself (an attempt ended, the next one follows): stderr."""
    if chunk.notice:
        say(chunk.notice)
