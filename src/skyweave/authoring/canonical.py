"""Deterministic bytes of a Python value, for the code hash of the constants a task reaches.

The same value gives the same bytes in every process (``PYTHONHASHSEED`` does not matter: sets are
sorted by the bytes of their items, dicts keep their insertion order, which is part of their
meaning).  Supported: ``None``, booleans, numbers, strings, bytes, lists, tuples (named ones too),
dicts, sets, frozensets, ranges, enums, paths, dates and times, ``Decimal``, ``Fraction``,
``UUID``, compiled regular expressions, ``functools.partial``, numpy arrays and scalars (astropy
quantities with their unit), astropy units, dataclass instances and instances of the user's own
classes (by their attributes).  Anything else raises ``NotCanonical`` naming where it sits: a
lock, a session, a file handle... has no value that could be compared between two runs.

Functions and classes met inside a value (``DISPATCH = {"a": helper}``) are handed to ``code``,
which hashes them as code, and are written as their qualified name.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import logging
import pathlib
import re
import types
import uuid
from collections.abc import Callable
from typing import Any

_SCALARS = (type(None), bool, int, float, complex, str, bytes, bytearray, range, slice,
            datetime.date, datetime.time, datetime.timedelta, datetime.timezone, decimal.Decimal,
            fractions.Fraction, uuid.UUID)


class NotCanonical(Exception):
    """A value (or a part of it, at ``where``) with no deterministic serialisation."""

    def __init__(self, type_name: str, where: str) -> None:
        super().__init__(type_name, where)
        self.type_name = type_name
        self.where = where


def qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def canonical(value: Any, *, code: Callable[[Any], bool], is_user_class: Callable[[type], bool]) -> bytes:
    """The bytes of ``value``.  ``code(obj)`` is called for each function or class inside it and
    returns whether it is the user's (hashed as code) or a library's (named only)."""
    out: list[bytes] = []
    _Writer(code, is_user_class, out).write(value, "", set())
    return b"".join(out)


class _Writer:
    def __init__(self, code: Callable[[Any], bool], is_user_class: Callable[[type], bool],
                 out: list[bytes]) -> None:
        self.code = code
        self.is_user_class = is_user_class
        self.out = out

    def name(self, cls: Any) -> str:
        """A class's name as hashed: the user's by qualified name only (the same file may be imported
        as ``pipeline`` or loaded by path under another module name), a library's with its module."""
        return cls.__qualname__ if self.is_user_class(cls) else qualified(cls)

    def put(self, text: str) -> None:
        self.out.append(text.encode() + b"\x00")

    def write(self, value: Any, where: str, path: set[int]) -> None:
        kind = type(value)
        if isinstance(value, enum.Enum):
            self.code(kind)
            self.put(f"enum:{self.name(kind)}.{value.name}")
            return
        if kind in _SCALARS:
            self.put(f"{kind.__name__}:{value!r}")
            return
        if isinstance(value, types.FunctionType | types.BuiltinFunctionType | type | types.MethodType):
            self.put(f"code:{value.__qualname__}" if self.code(value) else f"lib:{qualified(value)}")
            return
        if id(value) in path:
            raise NotCanonical(f"{kind.__qualname__} (it contains itself)", where)
        path = path | {id(value)}
        if isinstance(value, list | tuple):
            self.put(f"{'list' if isinstance(value, list) else 'tuple'}:{self.name(kind)}:{len(value)}")
            for i, item in enumerate(value):
                self.write(item, f"{where}[{i}]", path)
        elif isinstance(value, dict):
            self.put(f"dict:{self.name(kind)}:{len(value)}")
            for key, item in value.items():
                self.write(key, f"{where} (a key)", path)
                self.write(item, f"{where}[{key!r}]", path)
        elif isinstance(value, set | frozenset):
            items = sorted(canonical(v, code=self.code, is_user_class=self.is_user_class) for v in value)
            self.put(f"set:{kind.__name__}:{len(items)}")
            self.out.extend(items)
        else:
            self.write_object(value, where, path)

    def write_object(self, value: Any, where: str, path: set[int]) -> None:
        kind = type(value)
        module = getattr(kind, "__module__", "") or ""
        if isinstance(value, pathlib.PurePath):
            self.put(f"path:{value.as_posix()}")
        elif isinstance(value, re.Pattern):
            self.put(f"re:{value.flags}:{value.pattern!r}")
        elif isinstance(value, functools.partial):
            self.put("partial")
            self.write(value.func, f"{where}.func", path)
            self.write(value.args, f"{where}.args", path)
            self.write(value.keywords, f"{where}.keywords", path)
        elif isinstance(value, logging.Logger | logging.LoggerAdapter):
            self.put(f"logger:{getattr(value, 'name', '')}")  # where messages go, not data
        elif module.split(".")[0] == "numpy" or (hasattr(value, "dtype") and hasattr(value, "tobytes")):
            self.write_array(value, where)
        elif module.startswith("astropy.units") and hasattr(value, "to_string"):
            self.put(f"unit:{value.to_string()}")
        elif module == "typing" or module.startswith("typing_extensions"):
            self.put(f"typing:{value!r}")
        elif dataclasses.is_dataclass(value):
            self.code(kind)
            self.put(f"dataclass:{self.name(kind)}")
            for f in dataclasses.fields(value):
                self.put(f.name)
                self.write(getattr(value, f.name), f"{where}.{f.name}", path)
        elif self.is_user_class(kind) and (hasattr(value, "__dict__") or hasattr(kind, "__slots__")):
            self.code(kind)
            self.put(f"object:{self.name(kind)}")
            for name, item in _attributes(value):
                self.put(name)
                self.write(item, f"{where}.{name}", path)
        elif isinstance(inner := getattr(value, "__wrapped__", None) or getattr(value, "fn", None),
                        types.FunctionType):
            self.write(inner, where, path)  # an lru_cache'd helper, a skyweave Task: its function
        elif callable(value) and hasattr(value, "__name__"):
            self.put(f"lib:{qualified(kind)}:{value.__name__}")  # a ufunc, a numba dispatcher...
        else:
            raise NotCanonical(qualified(kind), where)

    def write_array(self, value: Any, where: str) -> None:
        dtype = getattr(value, "dtype", None)
        if dtype is None or getattr(dtype, "hasobject", False) or not hasattr(value, "tobytes"):
            raise NotCanonical(f"{qualified(type(value))} of Python objects", where)
        unit = getattr(value, "unit", None)
        self.put(f"array:{qualified(type(value))}:{dtype.str}:{getattr(value, 'shape', ())}:{unit}")
        self.out.append(value.tobytes())


def _attributes(value: Any) -> list[tuple[str, Any]]:
    found = dict(getattr(value, "__dict__", {}))
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in found and hasattr(value, name):
                found[name] = getattr(value, name)
    return list(found.items())
