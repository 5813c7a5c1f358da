"""Code hash of a Python task: its source plus the helpers and module constants it reaches.

Peers hash only the task's own source, so editing a helper function or a module constant silently
reuses stale results (redun #99, Prefect #23062).  We follow global names from the function's code
into functions, classes and constants defined in *user* modules (not the standard library or
site-packages), transitively.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import sysconfig
import types
from typing import Any

_LIB_PATHS = tuple(
    p for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("purelib"),
                sysconfig.get_paths().get("platlib")} if p
)
_CONSTANT_TYPES = (int, float, str, bytes, bool, complex, type(None), tuple, frozenset)


def _is_user_module(module_name: str | None) -> bool:
    if not module_name or module_name in sys.builtin_module_names:
        return False
    if module_name.startswith("skyweave.") and not module_name.startswith("skyweave.testing"):
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return not any(path.startswith(p) for p in _LIB_PATHS)


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) if code is not None else repr(obj)


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def code_hash(fn: Any) -> str:
    """``sha256:<hex>`` over the function's source and everything user-defined it reaches."""
    digest = hashlib.sha256()
    seen: set[int] = set()
    stack: list[Any] = [fn]
    while stack:
        obj = stack.pop()
        obj = getattr(obj, "fn", obj)  # a decorated task: hash the function
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        digest.update(_source(obj).encode())
        code = getattr(obj, "__code__", None)
        if code is None:
            continue
        module_globals: dict[str, Any] = getattr(obj, "__globals__", {})
        for name in sorted(_names(code)):
            if name not in module_globals:
                continue
            value = module_globals[name]
            if isinstance(value, _CONSTANT_TYPES):
                digest.update(f"{name}={value!r}".encode())
            elif isinstance(value, types.FunctionType | type) and _is_user_module(value.__module__):
                stack.append(value)
            elif _is_user_module(getattr(getattr(value, "fn", None), "__module__", None)):
                stack.append(value.fn)
    return "sha256:" + digest.hexdigest()
