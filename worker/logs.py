"""Task logs: a bounded tail kept after the container is gone, and live streams."""

from __future__ import annotations

import codecs
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from docker.models.containers import Container

from cloudai.validation import format_size
from cloudai.worker.containers import DOCKER_ERRORS

LOG_TAIL_BYTES = 64 * 1024
# Ask Docker for at most this many lines. A line is at least one byte, so the byte
# bound of LogTail is always reached first: it alone decides, and knows, what is cut.
LOG_TAIL_LINES = LOG_TAIL_BYTES


class LogTail:
    """Keeps the END of a byte stream, at most `limit` bytes: the last lines of a
    failing task are the ones that say why."""

    def __init__(self, limit: int = LOG_TAIL_BYTES) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size > self.limit and self._chunks:
            excess = self._size - self.limit
            head = self._chunks.popleft()
            if len(head) > excess:
                self._chunks.appendleft(head[excess:])
                self._size -= excess
            else:
                self._size -= len(head)
            self.truncated = True

    def text(self) -> str:
        """The tail; when output was cut, it starts with a line that says so (within
        the limit: the store keeps only as much)."""
        data = b"".join(self._chunks)
        if not self.truncated:
            return data.decode("utf-8", errors="replace")
        kept = format_size(self.limit)
        mark = f"[cloudai: earlier output was not kept; the last {kept} follow]\n".encode()
        data = data[len(mark) :]
        # Drop the partial first line (and any split UTF-8 sequence with it).
        newline = data.find(b"\n")
        if 0 <= newline < 1024:
            data = data[newline + 1 :]
        return (mark + data).decode("utf-8", errors="replace")


def decode_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode a byte stream whose chunks may split multi-byte characters."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    rest = decoder.decode(b"", final=True)
    if rest:
        yield rest


_END = object()


def coalesced(pieces: Iterable[str], limit: int) -> Iterator[str]:
    """The same text in fewer, larger pieces: each is whatever has arrived by the time
    the reader asks, up to about `limit` characters, so nothing waits for company.
    A chatty task's log comes from Docker a line at a time; sent as is, each line
    would be a message on each hop. A thread reads `pieces`; it ends when they do, or
    soon after the reader stops (close the source to end a followed stream)."""
    q: queue.Queue = queue.Queue(maxsize=1024)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for piece in pieces:
                if not put(piece):
                    return
        except BaseException as err:  # handed to the reader, raised there
            put(err)
        put(_END)

    threading.Thread(target=pump, name="log-coalesce", daemon=True).start()
    try:
        yield from _drain(q, limit)
    finally:
        stop.set()


def _drain(q: queue.Queue, limit: int) -> Iterator[str]:
    while True:
        parts, size, item = [], 0, q.get()
        while item is not _END and not isinstance(item, BaseException):
            parts.append(item)
            size += len(item)
            if size >= limit:
                break
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
        if parts:
            yield "".join(parts)
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item


def last_lines(text: str, n: int) -> str:
    if n <= 0:
        return text
    lines = text.splitlines(keepends=True)
    return "".join(lines[-n:])


class LogStream:
    """Text chunks of one attempt's logs. `close()` ends a followed stream early
    (it may be called from another thread, e.g. when the RPC client goes away)."""

    def __init__(
        self,
        chunks: Iterable[bytes] = (),
        *,
        text: str = "",
        closer: Callable[[], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self._text = text
        self._closer = closer

    def __iter__(self) -> Iterator[str]:
        if self._text:
            yield self._text
        try:
            yield from decode_chunks(self._chunks)
        except DOCKER_ERRORS:
            return  # closed underneath us, or the container was removed mid-stream

    def close(self) -> None:
        if self._closer is not None:
            with contextlib.suppress(*DOCKER_ERRORS):
                self._closer()


def collect_tail(container: Container, limit: int = LOG_TAIL_BYTES) -> str:
    """The END of a container's stdout and stderr, at most `limit` bytes."""
    tail = LogTail(limit)
    try:
        for chunk in container.logs(
            stdout=True, stderr=True, stream=True, follow=False, tail=LOG_TAIL_LINES
        ):
            tail.feed(chunk)
    except DOCKER_ERRORS as err:
        note = " ".join(str(err).split())[:120]
        tail.feed(f"\n[cloudai: could not read logs: {note}]\n".encode())
    return tail.text()
