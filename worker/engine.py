"""The worker's connection to the Docker engine, made again after the engine restarts.

A daemon that is stopping closes its socket to new connections while it still
answers on the ones already open, so "is the engine there?" is asked on a new
connection (`accepts_new_connections`), and after an outage the worker moves to a
new client (`fresh`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import docker
from docker.errors import APIError

from cloudai.worker.containers import DOCKER_ERRORS


class EngineConnection:
    def __init__(self, factory: Callable[[], docker.DockerClient] | None = None) -> None:
        self._factory = factory or (lambda: docker.from_env(max_pool_size=64))
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def client(self) -> docker.DockerClient:
        """Created lazily and again after a failure, so a worker started before the
        engine (or across an engine restart) recovers on its own."""
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def fresh(self) -> docker.DockerClient | None:
        """A client on new connections, made the worker's client when the engine
        answers on them (the old one is left to whoever still holds it); None if
        the engine refuses."""
        try:
            client = self._factory()
            client.ping()
        except DOCKER_ERRORS:
            return None
        with self._lock:
            self._client = client
        return client

    def accepts_new_connections(self) -> bool:
        try:
            probe = self._factory()
        except DOCKER_ERRORS:
            return False
        try:
            probe.ping()
        except DOCKER_ERRORS:
            return False
        finally:
            with contextlib.suppress(*DOCKER_ERRORS):
                probe.close()
        return True

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def engine_gone(err: BaseException) -> bool:
    """A transport failure (connection refused or dropped), as opposed to an answer
    from the engine (APIError, e.g. 404): only the former is worth waiting out."""
    return isinstance(err, DOCKER_ERRORS) and not isinstance(err, APIError)
