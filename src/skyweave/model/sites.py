"""Which site holds a product: the site whose storage root its URI is under (docs/operations.md,
"Several sites").  Derived from the URI and the ``sites`` setting, so stores need no new column."""

from __future__ import annotations

from collections.abc import Mapping


def site_of(uri: str, roots: Mapping[str, str]) -> str:
    """The site whose storage root holds ``uri`` (the longest root that is a prefix of it), or ``""``."""
    best, best_len = "", -1
    for site, root in roots.items():
        for prefix in _forms(root):
            if (uri == prefix or uri.startswith(prefix.rstrip("/") + "/")) and len(prefix) > best_len:
                best, best_len = site, len(prefix)
    return best


def _forms(root: str) -> tuple[str, ...]:
    """A directory root as a path and as a ``file://`` URL (products are recorded either way)."""
    if "://" in root:
        return (root, root.removeprefix("file://")) if root.startswith("file://") else (root,)
    return (root, "file://" + root)
