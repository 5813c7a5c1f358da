"""Reading a declarative workflow file (YAML or JSON) and pointing errors at its lines."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from skyweave.errors import DefinitionError, WorkflowLoadError

SUFFIXES = (".yaml", ".yml", ".json")
Key = tuple[str | int, ...]


def _line_map(node: Any, path: Key, lines: dict[Key, int], source: str) -> None:
    """Record the line of every mapping value and list item; refuse duplicate keys."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise WorkflowLoadError(
                    f"{source}:{line}: key {key!r} appears twice (first at line {seen[key]})",
                    hint="each step, task, parameter and argument name must be unique in its section")
            seen[key] = line
            lines[(*path, key)] = line
            _line_map(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), lines, source)


class Document:
    """A parsed workflow file: its data, and where each key is (for error messages)."""

    def __init__(self, path: Path, data: Any, lines: dict[Key, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def at(self, *key: str | int) -> str:
        """``file:line`` of the deepest known prefix of ``key``."""
        for n in range(len(key), -1, -1):
            line = self.lines.get(tuple(key[:n]))
            if line is not None and n > 0:
                return f"{self.path.name}:{line}"
        return self.path.name

    def error(self, key: Key, message: str, hint: str | None = None) -> WorkflowLoadError:
        return WorkflowLoadError(f"{self.at(*key)}: {message}", hint=hint, file=str(self.path))

    def mapping(self, value: Any, key: Key, what: str, allowed: tuple[str, ...] | None = None
                ) -> dict[str, Any]:
        """``value`` as a mapping with string keys (``None`` is an empty one), checked."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"{what} must be a mapping, got {_kind(value)}",
                             hint=f"write {what} as `name: value` lines")
        for k in value:
            if not isinstance(k, str):
                raise self.error(key, f"{what} has a non-string key {k!r}", hint="quote it")
            if allowed is not None and k not in allowed:
                raise self.error((*key, k), f"unknown key {k!r} in {what}",
                                 hint=f"{suggest(k, allowed)}allowed keys: {', '.join(allowed)}")
        return value

    def typed(self, mapping: dict[str, Any], name: str, key: Key, types: type | tuple[type, ...],
              what: str, *, default: Any = None) -> Any:
        """``mapping[name]`` checked against ``types`` (``default`` when absent)."""
        if name not in mapping:
            return default
        value = mapping[name]
        bad_bool = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
        if bad_bool or not isinstance(value, types):
            raise self.error((*key, name), f"{name} must be {what}, got {_kind(value)} {value!r}")
        return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def read_document(path: Path) -> Document:
    """Parse a ``.yaml``/``.yml``/``.json`` workflow file, or raise one clear ``WorkflowLoadError``."""
    if not path.is_file():
        raise WorkflowLoadError(f"workflow file {str(path)!r} does not exist",
                                hint="give the path of an existing .yaml, .yml or .json workflow file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowLoadError(f"cannot read {str(path)!r}: {exc}") from exc
    lines: dict[Key, int] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowLoadError(f"{path.name}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
                                    hint="fix the syntax at that place") from None
    else:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{path.name}:{mark.line + 1}:{mark.column + 1}" if mark else path.name
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise WorkflowLoadError(f"{where}: invalid YAML: {problem}",
                                    hint="fix the syntax at that place (indentation, a missing ':' "
                                         "or an unclosed quote or bracket)") from None
        except yaml.YAMLError as exc:
            raise WorkflowLoadError(f"{path.name}: invalid YAML: {exc}") from None
        if node is not None:
            _line_map(node, (), lines, path.name)
    if not isinstance(data, dict):
        raise WorkflowLoadError(f"{path.name}: a workflow file must be a mapping with workflow:, "
                                f"params:, tasks:, steps: and output:, got {_kind(data)}",
                                hint="see docs/declarative.md for the format")
    return Document(path, data, lines)


def wrap(where: str, exc: DefinitionError) -> DefinitionError:
    """The same error, with ``where`` in front of its message (hint and class kept)."""
    new = type(exc)(f"{where}: {exc.message}", hint=exc.hint, **exc.details)
    new.__cause__ = exc.__cause__
    return new
