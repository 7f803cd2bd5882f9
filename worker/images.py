"""Images on the local engine: pulling what a task needs, listing what is cached."""

from __future__ import annotations

import threading
import time

import docker
from docker.errors import APIError, ImageNotFound
from docker.utils import parse_repository_tag

from cloudai.worker.containers import DOCKER_ERRORS
from cloudai.worker.outcome import Outcome, pull_outcome

# Heartbeats are frequent; the image list changes rarely.
IMAGE_LIST_CACHE_S = 10.0


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


class ImageList:
    """Local image tags, cached for a few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp = 0.0
        self._tags: list[str] = []

    def invalidate(self) -> None:
        with self._lock:
            self._stamp = 0.0

    def tags(self, client: docker.DockerClient, limit: int) -> list[str]:
        with self._lock:
            if time.monotonic() - self._stamp < IMAGE_LIST_CACHE_S:
                return self._tags[:limit]
        try:
            images = client.images.list()
        except DOCKER_ERRORS:
            return self._tags[:limit]  # stale beats empty while the engine blips
        tags = [tag for image in images for tag in image.tags if "<none>" not in tag]
        with self._lock:
            self._stamp, self._tags = time.monotonic(), tags
        return tags[:limit]
