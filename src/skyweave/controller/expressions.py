"""Evaluate the JSON expressions of ``when=`` and ``until=`` (no user code runs here)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from skyweave.errors import DefinitionError

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}


def select(value: Any, path: list[Any]) -> Any:
    """``value[p0][p1]...``; a missing key raises ``DefinitionError`` naming the path."""
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise DefinitionError(
                f"cannot select {step!r} from a value of type {type(value).__name__}",
                hint="check the key used in the workflow against what the task returns",
            ) from None
    return value


def describe(expr: Any) -> str:
    """``expr`` as readable text (``describe_events['imaging'] == True``), for skip messages."""
    if not isinstance(expr, dict):
        return repr(expr)
    if "lit" in expr:
        return repr(expr["lit"])
    if "ref" in expr or "result" in expr:
        head = str(expr.get("ref", "result"))
        path: list[Any] = list(expr.get("path") or expr.get("result") or [])
        return head + "".join(f"[{p!r}]" for p in path)
    args = [describe(a) for a in expr.get("args", [])]
    op = expr.get("op")
    if op in ("and", "or") and args:
        return f" {op} ".join(f"({a})" for a in args)
    if op in ("not", "abs") and len(args) == 1:
        return f"{op}({args[0]})"
    return f"{args[0]} {op} {args[1]}" if len(args) == 2 else f"{op}({', '.join(args)})"


def evaluate(expr: Any, resolve: Callable[[str, list[Any]], Any], result: Any = None) -> Any:
    """Evaluate ``expr``; ``resolve(node, path)`` gives a node output at the current key."""
    if not isinstance(expr, dict):
        raise DefinitionError(f"malformed expression {expr!r}")
    if "lit" in expr:
        return expr["lit"]
    if "ref" in expr:
        return resolve(expr["ref"], list(expr.get("path", [])))
    if "result" in expr:
        return select(result, list(expr["result"]))
    op = expr.get("op")
    args = expr.get("args", [])
    if op in _BINARY and len(args) == 2:
        return _BINARY[op](evaluate(args[0], resolve, result), evaluate(args[1], resolve, result))
    if op == "and":
        return all(bool(evaluate(a, resolve, result)) for a in args)
    if op == "or":
        return any(bool(evaluate(a, resolve, result)) for a in args)
    if op == "not" and len(args) == 1:
        return not evaluate(args[0], resolve, result)
    if op == "abs" and len(args) == 1:
        return abs(evaluate(args[0], resolve, result))
    raise DefinitionError(f"unknown expression operator {op!r}")
