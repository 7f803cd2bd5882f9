"""Images on the local engine: pulling what a task needs, listing what is cached."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import docker
from docker.errors import APIError, ImageNotFound
from docker.utils import parse_repository_tag

from cloudai.validation import MAX_IMAGE_LEN
from cloudai.worker.containers import DOCKER_ERRORS
from cloudai.worker.outcome import Outcome, pull_outcome

# Heartbeats are frequent; the image list changes rarely.
IMAGE_LIST_CACHE_S = 10.0
# How long a caller waits for a refresh it started. The refresh runs in its own
# thread: an engine that accepts connections but does not answer (a daemon still
# starting, a wedged one) must not hold up heartbeats for the client's 60 s timeout.
IMAGE_LIST_WAIT_S = 2.0


def ensure_image(client: docker.DockerClient, image: str, always_pull: bool) -> Outcome | None:
    """Pull the image unless it is already local (or always_pull). Returns None when
    the image is ready, else the FAILED outcome (image_not_found / pull_failed)."""
    if not always_pull:
        try:
            client.images.get(image)
            return None
        except ImageNotFound:
            pass
    repo, tag = parse_repository_tag(image)
    try:
        # The streaming API reports registry errors inside the stream; the
        # high-level images.pull() would swallow them.
        for event in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                return pull_outcome(image, str(event["error"]), time.time())
    except APIError as err:
        return pull_outcome(image, err.explanation or str(err), time.time())
    return None


class Pull:
    """`ensure_image` in a thread of its own, so that a cancel need not wait for it: a
    registry that does not answer holds a pull for dockerd's 30 s, a slow one for as
    long as the download takes. An abandoned pull ends on its own (its thread is a
    daemon, and what it fetched is simply cached)."""

    def __init__(self, client: docker.DockerClient, image: str, always_pull: bool) -> None:
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        args = (client, image, always_pull)
        threading.Thread(target=self._run, args=args, name="pull", daemon=True).start()

    def _run(self, client: docker.DockerClient, image: str, always_pull: bool) -> None:
        try:
            self.outcome = ensure_image(client, image, always_pull)
        except BaseException as err:  # handed to the waiting thread
            self.error = err
        finally:
            self.done.set()

    def wait(self, cancelled: threading.Event, poll_s: float) -> bool:
        """Block until the pull ended (True: see outcome/error, which it re-raises)
        or `cancelled` is set (False)."""
        while not self.done.wait(poll_s):
            if cancelled.is_set():
                return False
        if self.error is not None:
            raise self.error
        return True


def advertised(tag: str) -> bool:
    """Whether a local tag goes into heartbeats. Docker allows names of 255 characters
    plus a tag of 128, longer than any image a task may name: the master refuses a
    registration or heartbeat that lists one, so a single such tag on the host would
    leave every worker on it unable to register."""
    return "<none>" not in tag and len(tag) <= MAX_IMAGE_LEN and tag.isprintable()


class ImageList:
    """Local image tags, cached for a few seconds and refreshed in the background."""

    def __init__(self, wait_s: float = IMAGE_LIST_WAIT_S) -> None:
        self._lock = threading.Lock()
        self._stamp = 0.0
        self._tags: list[str] = []
        self._refresh: threading.Thread | None = None
        self._wait_s = wait_s

    def invalidate(self) -> None:
        with self._lock:
            self._stamp = 0.0

    def tags(self, client: Callable[[], docker.DockerClient], limit: int) -> list[str]:
        """The tags, refreshed when stale. A caller that starts a refresh waits up to
        wait_s for it; while it is still running, others get the last list at once
        (stale beats empty while the engine blips)."""
        with self._lock:
            if time.monotonic() - self._stamp < IMAGE_LIST_CACHE_S:
                return self._tags[:limit]
            started = self._refresh is None
            if started:
                self._refresh = threading.Thread(
                    target=self._load, args=(client,), name="image-list", daemon=True
                )
                self._refresh.start()
            refresh = self._refresh
        if started:
            refresh.join(self._wait_s)
        with self._lock:
            return self._tags[:limit]

    def _load(self, client: Callable[[], docker.DockerClient]) -> None:
        try:
            images = client().images.list()
        except DOCKER_ERRORS:
            images = None
        with self._lock:
            self._refresh = None
            if images is not None:
                self._tags = [t for image in images for t in image.tags if advertised(t)]
                self._stamp = time.monotonic()
