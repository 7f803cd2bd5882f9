"""How a resumed `--follow` stream drops what was printed before the master went
away (cloudai/cli/reconnect.py): the log API has no offset, so the master replays
the attempt from its start, its last --tail lines, or its stored (cut) log. The
real master restarts are in tests/faults/test_client_reconnect.py."""

from __future__ import annotations

import random

import pytest

from cloudai.cli.reconnect import WINDOW, Replay, Seen, overlap

LOG = "".join(f"line {i}\n" for i in range(1, 21))


def _printed(text: str, whole: bool = True) -> Seen:
    seen = Seen(whole=whole)
    seen.add(text)
    return seen


def _resume(seen: Seen, chunks: list[str], *, eof: bool = False) -> str:
    replay, out = Replay(seen), []
    for i, chunk in enumerate(chunks):
        out.append(replay.feed(chunk, last=eof and i == len(chunks) - 1))
    return "".join(out)


def _split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), 5))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@pytest.mark.parametrize("seed", range(5))
def test_a_full_replay_in_any_chunks_prints_only_the_new_part(seed):
    printed = LOG[: LOG.index("line 8")]
    got = _resume(_printed(printed), _split(LOG, random.Random(seed)))
    assert got == LOG[len(printed) :]


def test_a_full_replay_longer_than_the_window_skips_what_came_before_it():
    big = "".join(f"row {i:06d}\n" for i in range(12_000))  # > 64 KiB
    printed = big[:100_000]
    assert len(printed) > WINDOW
    got = _resume(_printed(printed), [big[i : i + 4096] for i in range(0, len(big), 4096)])
    assert got == big[100_000:]


def test_a_stored_log_cut_to_its_tail_is_matched_by_overlap():
    big = "".join(f"row {i:06d}\n" for i in range(12_000))
    printed = big[:80_000]
    stored = big[-WINDOW:]  # the task ended while the master was away
    assert _resume(_printed(printed), [stored], eof=True) == big[80_000:]


def test_a_replay_of_something_else_is_printed_whole():
    other = "another attempt\nits output\n"
    assert _resume(_printed(LOG[:40]), [other], eof=True) == other


def test_a_replay_shorter_than_what_was_printed_prints_nothing():
    assert _resume(_printed(LOG), [LOG[:30]], eof=True) == ""


def test_a_tail_replay_is_matched_against_what_the_earlier_tail_printed():
    lines = LOG.splitlines(keepends=True)
    seen = _printed("".join(lines[4:10]), whole=False)  # `--tail 6` printed lines 5-10
    got = _resume(seen, ["".join(lines[6:12])])  # resumed `--tail 6`: lines 7-12
    assert got == "".join(lines[10:12])


def test_nothing_printed_yet_passes_the_replay_through():
    replay = Replay(Seen(whole=True))
    assert not replay.active and replay.feed("x\n", last=False) == "x\n"


def test_overlap_is_the_longest_start_of_new_that_seen_ends_with():
    rng = random.Random(7)
    for _ in range(3000):
        seen = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 10)))
        new = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 10)))
        brute = max(p for p in range(min(len(seen), len(new)) + 1) if seen.endswith(new[:p]))
        assert overlap(seen, new) == brute, (seen, new)


class _StreamingClient:
    """Just what LogFollower calls: one stream of chunks, ended by eof."""

    reconnect = 5.0
    target = "127.0.0.1:1"

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks

    def raw_stream(self, method, request):
        from cloudai.proto import common_pb2 as pb

        yield from (pb.LogChunk(data=c) for c in self.chunks)
        yield pb.LogChunk(eof=True)


@pytest.mark.parametrize(
    ("chunks", "printed"),
    [(["abc\n", "no newline at end"], "abc\nno newline at end\n"), (["a\n", "b\n"], "a\nb\n")],
)
def test_a_followed_log_ends_its_last_line_so_the_task_box_starts_on_its_own(chunks, printed):
    """`submit --follow` of a task whose output did not end with a newline printed the
    final task box on the log's last line (`no newline at end╭───`)."""
    import io

    from cloudai.cli.reconnect import LogFollower

    out = io.StringIO()
    LogFollower(_StreamingClient(chunks), "t-1", 0, out).run()
    assert out.getvalue() == printed
