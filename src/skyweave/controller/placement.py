"""Where an activity runs when there are several sites (docs/operations.md, "Several sites").

A *site* is a named pool of workers next to a storage root.  A product belongs to the site whose
storage root holds its URI.  An activity whose task pins a site (``@task(site=…)``, YAML
``site:``) runs there; otherwise at the site holding most of its input bytes (ties: the first site
by name), and with no located input at the controller's home site.  The answer is the site its
dispatch is enqueued for (``Bus.enqueue(site=)``), which only that site's workers claim.  Pure
functions of their arguments: the controller calls them while dispatching.
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
