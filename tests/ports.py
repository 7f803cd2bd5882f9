"""Loopback ports for tests that must name a port before anything listens on it (a
worker restarted at the same address, a master a client is told about in advance).

The ports come from 24100-24899, or LOW-HIGH from CLOUDAI_TEST_PORTS (runs side by
side on one machine keep to their own ranges):
- the default range is below Linux's ephemeral ports (32768-60999), so no outgoing
  connection takes a port between our check and the server's bind, or while a
  stopped worker waits to be started again on it;
- scripts/run_tests.py gives the two pytest processes it runs side by side halves of
  the range, so two tests running at once never pick the same port;
- successive calls go round the range, so two ports asked for before either is bound
  differ.
A test that needs no fixed port listens on port 0 instead.
"""

from __future__ import annotations

import itertools
import os
import socket


def port_range() -> range:
    """The test port range: CLOUDAI_TEST_PORTS (LOW-HIGH), or 24100-24899."""
    low, _, high = os.environ.get("CLOUDAI_TEST_PORTS", "24100-24899").partition("-")
    return range(int(low), int(high or low) + 1)


PORTS = port_range()
_next = itertools.cycle(PORTS)


def free_port(avoid: tuple[int, ...] = ()) -> int:
    """The next port of the range that nothing listens on now."""
    for _ in range(len(PORTS)):
        port = next(_next)
        if port in avoid:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")
