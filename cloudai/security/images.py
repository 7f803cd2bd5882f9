"""Image admission: which images tasks may run, checked by the master at submit time.

An allow-list entry is one of:

- a prefix ending in "/": a registry or a namespace, e.g. `registry.example.com/`,
  `127.0.0.1:5000/team/`, `cloudai/` (Docker Hub's cloudai namespace);
- a repository, e.g. `cloudai/sample-task`: any tag or digest of it;
- a repository with a tag or digest, e.g. `alpine:3.20` or `alpine@sha256:...`:
  exactly that.

Names are normalised as Docker does (`alpine` is `docker.io/library/alpine`), so an
entry cannot be sidestepped by spelling the same image differently. Digest-pinned
references (`name@sha256:...`) are admitted by their repository.
An empty list admits every image (the default, for compatibility).
"""

from __future__ import annotations

from dataclasses import dataclass

from cloudai.errors import ConfigError, InvalidArgument
from cloudai.validation import IMAGE_RE

DEFAULT_REGISTRY = "docker.io"


@dataclass(frozen=True, slots=True)
class ImageRef:
    repository: str  # registry/path, normalised
    tag: str = ""
    digest: str = ""


def parse(ref: str) -> ImageRef:
    m = IMAGE_RE.match(ref.strip())
    if not m:
        raise InvalidArgument(f"invalid image reference {ref!r}")
    domain, path = m.group("domain"), m.group("path")
    # As Docker reads it: the first component is a registry only if it looks like
    # a host (has a dot or a port, or is localhost).
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        path, domain = f"{domain}/{path}", None
    domain = (domain or DEFAULT_REGISTRY).lower()
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DEFAULT_REGISTRY
    if domain == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    return ImageRef(f"{domain}/{path}", m.group("tag") or "", m.group("digest") or "")


class ImagePolicy:
    def __init__(self, entries: list[str]) -> None:
        self.entries = [e.strip() for e in entries if e.strip()]
        self._prefixes: list[str] = []
        self._exact: list[ImageRef] = []
        for entry in self.entries:
            try:
                if entry.endswith("/"):
                    self._prefixes.append(_prefix(entry))
                else:
                    self._exact.append(parse(entry))
            except InvalidArgument as err:
                raise ConfigError(f"image allow-list entry {entry!r} is not valid") from err

    def problem(self, image: str) -> str:
        """ "" when the image is admitted, else why not."""
        if not self.entries:
            return ""
        ref = parse(image)
        full = ref.repository + "/"
        if any(full.startswith(p) for p in self._prefixes):
            return ""
        for allowed in self._exact:
            if allowed.repository != ref.repository:
                continue
            if not allowed.tag and not allowed.digest:
                return ""
            if (allowed.digest and allowed.digest == ref.digest) or (
                allowed.tag and not allowed.digest and allowed.tag == (ref.tag or "latest")
            ):
                return ""
        return (
            f"image {image!r} is not allowed on this cluster: allowed are "
            f"{', '.join(self.entries)} (CLOUDAI_IMAGE_ALLOWLIST)"
        )

    def check(self, image: str) -> None:
        problem = self.problem(image)
        if problem:
            raise InvalidArgument(problem)


def _prefix(entry: str) -> str:
    """'cloudai/' -> 'docker.io/cloudai/', '127.0.0.1:5000/' -> '127.0.0.1:5000/'."""
    body = entry.rstrip("/")
    first = body.split("/", 1)[0]
    if "." in first or ":" in first or first == "localhost":
        return body.lower() + "/" if "/" not in body else _host_lower(body) + "/"
    return f"{DEFAULT_REGISTRY}/{body}/"


def _host_lower(body: str) -> str:
    host, _, rest = body.partition("/")
    return f"{host.lower()}/{rest}"
