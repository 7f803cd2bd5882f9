"""QA pass 6, engine-free: the image tags a worker advertises must pass the master's
own check of registrations and heartbeats (cloudai.security.inputs)."""

from __future__ import annotations

from types import SimpleNamespace

from cloudai.security import inputs
from cloudai.worker.images import ImageList

# Legal for Docker: a 244-character repository name and a 120-character tag.
LONG_TAG = f"registry.example:5000/{'n' * 222}:{'t' * 120}"


class FakeImages:
    """The `images.list()` answer of an engine holding these tags."""

    def __init__(self, *tag_lists: list[str]) -> None:
        self._images = [SimpleNamespace(tags=tags) for tags in tag_lists]

    def list(self) -> list[SimpleNamespace]:
        return self._images


def test_a_long_legal_tag_is_not_advertised_so_the_master_accepts_the_list() -> None:
    """One such tag on the host used to make the master refuse every registration and
    heartbeat of every worker on it (INVALID_ARGUMENT: cached_images[i] is not an image
    name): the workers went INACTIVE and their tasks were requeued."""
    images = FakeImages(["cloudai/base:bookworm", LONG_TAG], ["<none>:<none>"], ["a/b:c"])
    client = SimpleNamespace(images=images)
    tags = ImageList().tags(lambda: client, 200)  # type: ignore[arg-type, return-value]
    assert tags == ["cloudai/base:bookworm", "a/b:c"]
    inputs.check_images("cached_images", tags)  # the master's check: raises if refused
