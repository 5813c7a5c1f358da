"""The listener interface.

A listener subscribes to topics by pattern (``fnmatch``: ``activity.failed``, ``run.*``,
``product.created``) and is called with each matching event::

    from skyweave.listeners import listener

    @listener("activity.failed", "run.failed")
    def page_the_duty_scientist(topic, event, ctx):
        ctx.log.warning("%s: %s", topic, event)

or as a class with ``patterns`` and ``on_event(topic, event, ctx)``.  Load them with
``listeners = ["path/to/file.py:page_the_duty_scientist"]`` in ``skyweave.toml``, with an entry
point in the ``skyweave.listeners`` group, or by passing objects to ``Engine``.  A listener that
raises is logged and counted; it can never stop the controller.  ``ctx.submit(...)`` starts a run
(e.g. an urgent follow-up).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from skyweave.authoring.loader import load_object
from skyweave.errors import DefinitionError, WorkflowLoadError

Submit = Callable[[str, dict[str, Any], int], str]


@dataclass
class ListenerContext:
    log: logging.Logger
    submit: Submit | None = None
    """``submit("file.py:workflow", params, priority) -> run id``, when the host can start runs."""
    extra: dict[str, Any] = field(default_factory=dict)


class Listener:
    name: str = "listener"
    patterns: tuple[str, ...] = ("*",)

    def wants(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, p) for p in self.patterns)

    def on_event(self, topic: str, event: Any, ctx: ListenerContext) -> None:
        raise NotImplementedError


class _FunctionListener(Listener):
    def __init__(self, fn: Callable[[str, Any, ListenerContext], None], patterns: tuple[str, ...]) -> None:
        self.fn = fn
        self.patterns = patterns
        self.name = getattr(fn, "__name__", "listener")

    def on_event(self, topic: str, event: Any, ctx: ListenerContext) -> None:
        self.fn(topic, event, ctx)


def listener(*patterns: str) -> Callable[[Callable[[str, Any, ListenerContext], None]], Listener]:
    """Turn a function ``(topic, event, ctx)`` into a listener for ``patterns``."""

    def wrap(fn: Callable[[str, Any, ListenerContext], None]) -> Listener:
        return _FunctionListener(fn, patterns or ("*",))

    return wrap


def as_listener(obj: Any, where: str) -> Listener:
    if isinstance(obj, Listener):
        return obj
    if isinstance(obj, type) and issubclass(obj, Listener):
        return obj()
    if callable(obj):
        return _FunctionListener(obj, tuple(getattr(obj, "patterns", ("*",))))
    raise DefinitionError(f"{where} is a {type(obj).__name__}, not a listener",
                          hint="use @skyweave.listeners.listener('activity.failed') on a function")


def load_listener(ref: str) -> Listener:
    """``path.py:name``, ``module:name`` or the name of a ``skyweave.listeners`` entry point."""
    if ":" not in ref:
        for ep in entry_points(group="skyweave.listeners"):
            if ep.name == ref:
                return as_listener(ep.load(), ref)
        names = [ep.name for ep in entry_points(group="skyweave.listeners")]
        raise DefinitionError(f"no listener entry point named {ref!r}",
                              hint=f"installed: {', '.join(names) or 'none'}; or give path.py:NAME")
    try:
        return as_listener(load_object(ref), ref)
    except WorkflowLoadError as exc:
        raise DefinitionError(f"cannot load listener {ref!r}: {exc.message}",
                              hint="give path.py:NAME, or module:NAME of a module in the directory skyweave "
                                   "was started in or installed") from exc
