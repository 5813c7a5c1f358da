"""Where an activity runs when there are several sites (docs/operations.md, "Several sites").

A *site* is a named pool of workers next to a storage root.  A product belongs to the site whose
storage root holds its URI.  An activity whose task pins a site (``@task(site=…)``, YAML
``site:``) runs there; otherwise at the site holding most of its input bytes (ties: the first site
by name), and with no located input at the controller's home site.  The answer is the site its
dispatch is enqueued for (``Bus.enqueue(site=)``), which only that site's workers claim.  A site
with no live worker for ``grace_s`` loses its unpinned work to another (``sitewatch.py``, which
asks ``fallback`` where).  Pure functions of their arguments: the controller calls them while
dispatching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from skyweave.model.messages import ProductRef
from skyweave.model.sites import site_of


class Sites(msgspec.Struct, frozen=True, kw_only=True):
    """The controller's view of the sites: its own (``home``) and each site's storage root."""

    home: str = ""
    """Where work with no located input runs (``""``: the workers with no site)."""
    roots: dict[str, str] = msgspec.field(default_factory=dict)
    """Site name -> the storage root (directory or URL) holding its products."""
    grace_s: float = 30.0
    """Seconds a site may be without a live worker before its unpinned work is placed elsewhere."""


def input_bytes(inputs: Iterable[ProductRef], roots: Mapping[str, str]) -> dict[str, int]:
    """Site -> how many input bytes it holds (inputs outside every site are left out)."""
    held: dict[str, int] = {}
    for ref in inputs:
        site = site_of(ref.uri, roots)
        if site:
            held[site] = held.get(site, 0) + (ref.size or 0)
    return held


def place(pinned: str, inputs: Iterable[ProductRef], sites: Sites) -> str:
    """The site an activity runs at: ``pinned`` if given, else the one holding most input bytes."""
    if pinned:
        return pinned
    held = input_bytes(inputs, sites.roots)
    if not held:
        return sites.home
    return min(held, key=lambda site: (-held[site], site))


def fallback(inputs: Iterable[ProductRef], sites: Sites, live: Iterable[str], away_from: str) -> str:
    """Where unpinned work placed at ``away_from`` runs instead when that site has no live worker:
    the site with live workers holding most of its input bytes (ties: by name), or ``""`` if no
    other named site has a live worker."""
    held = input_bytes(inputs, sites.roots)
    others = [site for site in live if site and site != away_from]
    return min(others, key=lambda site: (-held.get(site, 0), site), default="")
