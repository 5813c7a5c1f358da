"""Signals a task raises to ask the controller for something.  They are not failures."""

from __future__ import annotations

from typing import Any


class MissingInput(Exception):
    """Raise from a task when an input it needs is missing.

    ``param`` is the task parameter to bind once a product of ``product_type`` matching ``match``
    exists; ``provider_params`` are passed to the provider task the workflow names for that product
    type (e.g. a wider time window).  The controller then runs the provider and/or parks this
    activity, as the task's backtrack policy says, and runs it again with the product bound.
    """

    insufficient = False

    def __init__(
        self,
        param: str,
        product_type: str,
        *,
        match: dict[str, Any] | None = None,
        reason: str = "",
        provider_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason or f"missing input {param!r} of type {product_type!r}")
        self.param = param
        self.product_type = product_type
        self.match = dict(match or {})
        self.reason = reason or str(self)
        self.provider_params = dict(provider_params or {})


class InsufficientInput(MissingInput):
    """Raise when an input is present but does not suffice (e.g. attitude data with a gap)."""

    insufficient = True
