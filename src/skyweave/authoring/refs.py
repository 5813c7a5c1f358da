"""References to node outputs while a workflow is being built, and expressions over them.

Inside a ``@workflow`` function, calling a task returns a ``Ref`` instead of running it.  Refs are
wired into other calls (``merge(events=ev)``), indexed (``res["snr"]``), compared
(``res["snr"] > 5``) to build conditions, and marked ``each(ref)`` / ``gather(ref)`` to say how a
fan-out is iterated or collected.  Everything here turns into JSON that the controller evaluates
without importing user code.
"""

from __future__ import annotations

from typing import Any

from skyweave.errors import DefinitionError


class Expr:
    """A JSON-serialisable expression; the controller evaluates it (``controller/expressions.py``)."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def _op(self, op: str, *others: Any) -> Expr:
        return OpExpr(op, (self, *others))

    def __gt__(self, other: Any) -> Expr:
        return self._op(">", other)

    def __ge__(self, other: Any) -> Expr:
        return self._op(">=", other)

    def __lt__(self, other: Any) -> Expr:
        return self._op("<", other)

    def __le__(self, other: Any) -> Expr:
        return self._op("<=", other)

    def __eq__(self, other: Any) -> Expr:  # type: ignore[override]
        return self._op("==", other)

    def __ne__(self, other: Any) -> Expr:  # type: ignore[override]
        return self._op("!=", other)

    def __and__(self, other: Any) -> Expr:
        return self._op("and", other)

    def __or__(self, other: Any) -> Expr:
        return self._op("or", other)

    def __invert__(self) -> Expr:
        return self._op("not")

    def __abs__(self) -> Expr:
        return self._op("abs")

    def __bool__(self) -> bool:
        raise DefinitionError(
            "a workflow value is not known while the workflow is being built, so it cannot be used "
            "in a Python `if`, `and`, `or` or `not`",
            hint="use when=<condition> on the task call, and &, |, ~ to combine conditions",
        )

    __hash__ = object.__hash__


def to_json_value(value: Any) -> Any:
    """A literal or an expression as JSON."""
    if isinstance(value, Expr):
        return value.to_json()
    return {"lit": value}


class OpExpr(Expr):
    def __init__(self, op: str, args: tuple[Any, ...]) -> None:
        self.op = op
        self.args = args

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "args": [to_json_value(a) for a in self.args]}


class ResultPlaceholder(Expr):
    """``skyweave.result``: the latest result of a loop body, for ``until=`` conditions."""

    def __init__(self, path: tuple[str | int, ...] = ()) -> None:
        self.path = path

    def __getitem__(self, item: str | int) -> ResultPlaceholder:
        return ResultPlaceholder((*self.path, item))

    def to_json(self) -> dict[str, Any]:
        return {"result": list(self.path)}


result = ResultPlaceholder()


class Ref(Expr):
    """The output of a node (all its instances), optionally a path into it."""

    def __init__(self, node: str, path: tuple[str | int, ...] = (), mode: str = "auto") -> None:
        self.node = node
        self.path = path
        self.mode = mode
        """``auto``, ``each`` (iterate its items), ``gather`` (collect its instances) or ``bcast``
        (the same value for every activity of a map)."""

    def __getitem__(self, item: str | int) -> Ref:
        return Ref(self.node, (*self.path, item), self.mode)

    def __iter__(self) -> Any:
        raise DefinitionError(
            f"the output of {self.node!r} is not known while the workflow is being built, so it "
            "cannot be iterated in Python",
            hint=f"fan out over it with some_task.map(arg={self.node}_output)",
        )

    def __repr__(self) -> str:
        return f"Ref({self.node!r}{''.join(f'[{p!r}]' for p in self.path)})"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ref": self.node, "path": list(self.path)}
        if self.mode != "auto":
            data["mode"] = self.mode
        return data


def each(ref: Ref) -> Ref:
    """Iterate over the items of ``ref``'s value: one activity per item (unknown fan-out)."""
    _check_ref(ref, "each")
    return Ref(ref.node, ref.path, "each")


def unmapped(ref: Any) -> Any:
    """Pass the same value to every activity of a ``task.map(...)`` instead of iterating over it.
    (Literals and registered products are passed unchanged: they are never iterated.)"""
    if not isinstance(ref, Ref):
        return ref
    return Ref(ref.node, ref.path, "bcast")


def gather(ref: Ref) -> Ref:
    """Collect every instance of a fanned-out ``ref`` into one list (waits for all of them).

    Of a single activity's output, ``gather`` makes an optional input: ``[value]``, or ``[]`` when
    that activity was skipped (instead of skipping the activity that takes it)."""
    _check_ref(ref, "gather")
    return Ref(ref.node, ref.path, "gather")


def _check_ref(ref: Any, what: str) -> None:
    if not isinstance(ref, Ref):
        raise DefinitionError(
            f"{what}() takes the output of a task call inside a workflow, got {type(ref).__name__}",
            hint=f"write {what}(some_task(...))",
        )
