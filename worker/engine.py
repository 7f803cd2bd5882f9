"""The worker's connection to the Docker engine, made again after the engine restarts.

The worker checks the engine once at start-up (`check`): a worker whose engine is
not there exits with one line instead of registering and failing every task. An
outage after that is waited out (see executor.py). A daemon that is stopping closes
its socket to new connections while it still answers on the ones already open, so
"is the engine there?" is asked on a new connection (`accepts_new_connections`),
and after an outage the worker moves to a new client (`fresh`). Those questions, and
the background pings of `watch` (watch.py), use a short timeout: an engine that hangs
accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import docker
from docker.constants import DEFAULT_TIMEOUT_SECONDS
from docker.errors import APIError, NotFound

from cloudai.errors import InvalidArgument, Unavailable
from cloudai.worker.containers import DOCKER_ERRORS
from cloudai.worker.outcome import one_line, unreachable_cause
from cloudai.worker.watch import PROBE_TIMEOUT_S, EngineWatch

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# How long the start-up check waits for the engine's first answer.
CHECK_TIMEOUT_S = 10.0


def engine_address() -> str:
    """Where the docker SDK looks for the engine: DOCKER_HOST, else the usual socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


class EngineConnection:
    def __init__(
        self,
        factory: Callable[[], docker.DockerClient] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self._factory = factory  # None: docker.from_env, with the timeout asked for
        # Where the engine is, for messages; unknown ("") behind a custom factory.
        self.address = "" if factory else engine_address()
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        # Started by check(): a worker pings its engine from start-up on.
        self.watch = EngineWatch(self.ping, say or (lambda _text: None))

    def check(self) -> None:
        """At start-up: raise Unavailable (one line) unless the engine answers within
        CHECK_TIMEOUT_S (a hung one would hold the first call for the SDK's 60 s)."""
        try:
            client = self._connect(CHECK_TIMEOUT_S)
            client.ping()
        except DOCKER_ERRORS as err:
            cause = unreachable_cause(err) or _answer(err)
            hint = "may this user use it?" if "permission" in cause else "is dockerd running?"
            where = f" at {self.address}" if self.address else ""
            raise Unavailable(f"cannot reach the Docker engine{where}: {cause}; {hint}") from None
        _set_timeout(client, DEFAULT_TIMEOUT_SECONDS)
        with self._lock:
            if self._client is None:
                self._client, client = client, None
        if client is not None:
            client.close()
        self.watch.start()

    def check_network(self, network: str) -> None:
        """At start-up: raise InvalidArgument when the network tasks join is not on the
        engine; every task would fail at create, on a worker that looks healthy."""
        try:
            self.client().networks.get(network)
        except NotFound:
            where = f" at {self.address}" if self.address else ""
            raise InvalidArgument(
                f"Docker network {network!r} not found on the engine{where}; create it "
                f"(docker network create {network}) or pick another --network"
            ) from None
        except DOCKER_ERRORS:
            pass  # the engine answered a ping just now; a blip is not this check's business

    def client(self) -> docker.DockerClient:
        """Created lazily and again after a failure, so a worker keeps going across an
        engine restart."""
        with self._lock:
            if self._client is None:
                self._client = self._connect(DEFAULT_TIMEOUT_SECONDS)
            return self._client

    def fresh(self) -> docker.DockerClient | None:
        """A client on new connections, made the worker's client when the engine
        answers on them (the old one is left to whoever still holds it); None if
        the engine refuses or does not answer within PROBE_TIMEOUT_S."""
        try:
            client = self._connect(PROBE_TIMEOUT_S)
            client.ping()
        except DOCKER_ERRORS:
            return None
        _set_timeout(client, DEFAULT_TIMEOUT_SECONDS)
        with self._lock:
            self._client = client
        return client

    def silence(self) -> str:
        """'the Docker engine at X has not answered for 20s (timed out)', for messages."""
        where = f" at {self.address}" if self.address else ""
        silent, cause = self.watch.silent_for(), self.watch.cause() or "no answer"
        return f"the Docker engine{where} has not answered for {silent:.0f}s ({cause})"

    def accepts_new_connections(self) -> bool:
        return not self.ping()

    def ping(self) -> str:
        """Ask on a new connection, with a short timeout: "" when the engine answered
        (an error answer counts), else why not ("timed out", "connection refused")."""
        try:
            probe = self._connect(PROBE_TIMEOUT_S)
        except DOCKER_ERRORS as err:
            return unreachable_cause(err) or ""
        try:
            probe.ping()
        except DOCKER_ERRORS as err:
            return unreachable_cause(err) or ""
        finally:
            with contextlib.suppress(*DOCKER_ERRORS):
                probe.close()
        return ""

    def close(self) -> None:
        self.watch.stop()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connect(self, timeout: float) -> docker.DockerClient:
        """A new client whose calls time out after `timeout` (a custom factory's
        first call, if it asks the engine for its version, keeps its own timeout)."""
        if self._factory is None:
            return docker.from_env(max_pool_size=64, timeout=timeout)
        client = self._factory()
        _set_timeout(client, timeout)
        return client


def _set_timeout(client: docker.DockerClient, timeout: float) -> None:
    with contextlib.suppress(AttributeError):  # a stand-in client in a unit test
        client.api.timeout = timeout


def engine_gone(err: BaseException) -> bool:
    """A transport failure (connection refused or dropped), as opposed to an answer
    from the engine (APIError, e.g. 404): only the former is worth waiting out."""
    return isinstance(err, DOCKER_ERRORS) and not isinstance(err, APIError)


def _answer(err: BaseException) -> str:
    """What an engine that did answer said (an APIError's explanation)."""
    return one_line(getattr(err, "explanation", None) or str(err) or type(err).__name__, 200)
