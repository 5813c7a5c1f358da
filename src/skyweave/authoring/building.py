"""The workflow being built right now (a context variable), so that task calls become nodes."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from skyweave.errors import DefinitionError

if TYPE_CHECKING:
    from skyweave.authoring.refs import Expr, Ref


class Builder(Protocol):
    def add_call(self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, mapped: bool,
                 when: Expr | None = None, priority: int | None = None, name: str | None = None
                 ) -> Ref: ...


_builder: ContextVar[Builder | None] = ContextVar("skyweave_builder", default=None)


def current_builder() -> Builder | None:
    return _builder.get()


def require_builder(what: str) -> Builder:
    builder = _builder.get()
    if builder is None:
        raise DefinitionError(
            f"{what}(...) wires a workflow and only works inside a @workflow function",
            hint="call the task directly to run it here, or put the call in a @workflow",
        )
    return builder


def set_builder(builder: Builder | None) -> object:
    return _builder.set(builder)


def reset_builder(token: object) -> None:
    _builder.reset(token)  # type: ignore[arg-type]
