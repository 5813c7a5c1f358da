"""References and conditions in declarative workflow files, parsed without ``eval``.

A value string is a reference when it starts with ``$``::

    $params.NAME[.key...]     a workflow parameter (known at submission: becomes a literal)
    $STEP[.key|.index...]     the output of a step, optionally a path into it
    each($STEP...)            iterate the items of a step's output (in ``map:`` only)
    gather($STEP...)          collect every instance of a fanned-out step into one list
    $$text                    the literal string ``$text``

A condition (``when:``, ``loop.until:``) is a small expression language: references (and
``$result.key`` in ``until:``), numbers, quoted strings, ``true``/``false``/``null``, the
comparisons ``== != < <= > >=``, ``and``, ``or``, ``not``, ``abs(...)`` and parentheses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

from skyweave.errors import DefinitionError

CONDITION_HINT = ("a condition uses $step.key / $params.name references, numbers, 'quoted strings', "
                  "true/false/null, == != < <= > >=, and, or, not, abs(...) and parentheses, "
                  "e.g. \"$merged.snr > 5 and not $params.dry_run\"")
REF_HINT = ("write $params.NAME, $STEP or $STEP.key.0 (each($STEP) / gather($STEP) to choose how a "
            "fan-out is iterated); write $$ for a literal string starting with $")

_SEG = r"[A-Za-z0-9_-]+"
_REF = re.compile(rf"\$([A-Za-z_]\w*)((?:\.{_SEG})*)")
_MARKED = re.compile(r"(each|gather)\(\s*(\$[^()\s]*)\s*\)")


@dataclass(frozen=True)
class StepRef:
    step: str
    path: tuple[str | int, ...] = ()
    mode: str = "auto"


@dataclass(frozen=True)
class ParamRef:
    name: str
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class ResultRef:
    path: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Op:
    op: str
    args: tuple[Any, ...]


Node = StepRef | ParamRef | ResultRef | Lit | Op


def _segments(text: str) -> tuple[str | int, ...]:
    return tuple(int(s) if s.isdigit() else s for s in text.split(".")[1:]) if text else ()


def _ref(text: str, where: str, *, allow_result: bool = False) -> StepRef | ParamRef | ResultRef:
    match = _REF.fullmatch(text)
    if match is None:
        raise DefinitionError(f"{where}: {text!r} is not a valid reference", hint=REF_HINT)
    name, path = match.group(1), _segments(match.group(2))
    if name == "params":
        if not path or not isinstance(path[0], str):
            raise DefinitionError(f"{where}: {text!r} names no parameter", hint="write $params.NAME")
        return ParamRef(path[0], path[1:])
    if name == "result":
        if not allow_result:
            raise DefinitionError(f"{where}: $result is only meaningful in loop.until",
                                  hint="refer to a step's output with $STEP")
        return ResultRef(path)
    return StepRef(name, path)


def parse_value(value: Any, where: str) -> Any:
    """A YAML/JSON argument value with its reference strings parsed (recursively)."""
    if isinstance(value, str):
        if value.startswith("$$"):
            return value[1:]
        if value.startswith("$"):
            return _ref(value, where)
        marked = _MARKED.fullmatch(value.strip())
        if marked:
            ref = _ref(marked.group(2), where)
            if not isinstance(ref, StepRef):
                raise DefinitionError(f"{where}: {marked.group(1)}() needs a step output, got {value!r}",
                                      hint="parameters are single values known at submission")
            return StepRef(ref.step, ref.path, marked.group(1))
        return value
    if isinstance(value, list):
        return [parse_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: parse_value(v, f"{where}.{k}") for k, v in value.items()}
    return value


def all_refs(value: Any) -> list[StepRef | ParamRef | ResultRef]:
    """Every reference inside a parsed value or condition (or lists and dicts of them)."""
    if isinstance(value, StepRef | ParamRef | ResultRef):
        return [value]
    if isinstance(value, Op):
        return [r for a in value.args for r in all_refs(a)]
    if isinstance(value, list):
        return [r for v in value for r in all_refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in all_refs(v)]
    return []


# -- conditions -----------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<ref>\$[A-Za-z_]\w*(?:\.[A-Za-z0-9_-]+)*)
  | (?P<op>==|!=|>=|<=|>|<|\(|\))
  | (?P<word>[A-Za-z_]\w*)
)""", re.VERBOSE)
_WORDS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_COMPARE = ("==", "!=", ">=", "<=", ">", "<")


class _Parser:
    def __init__(self, text: str, where: str, allow_result: bool) -> None:
        self.text = text
        self.where = where
        self.allow_result = allow_result
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if not text[pos:].strip():
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.lastgroup is None:
                self.fail(f"unexpected character {text[pos:].lstrip()[:1]!r}", pos + 1)
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind), match.start(kind) + 1))
            pos = match.end()
        self.i = 0

    def fail(self, what: str, column: int | None = None) -> NoReturn:
        at = f" at column {column}" if column else " at the end"
        raise DefinitionError(f"{self.where}: {what}{at} of condition {self.text!r}", hint=CONDITION_HINT)

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None, text: str | None = None) -> tuple[str, str, int] | None:
        token = self.peek()
        if token is not None and (kind is None or token[0] == kind) and (text is None or token[1] == text):
            self.i += 1
            return token
        return None

    def expect(self, kind: str, text: str) -> None:
        if self.take(kind, text) is None:
            token = self.peek()
            self.fail(f"expected {text!r}" + (f", found {token[1]!r}" if token else ""),
                      token[2] if token else None)

    def parse(self) -> Node:
        if not self.tokens:
            self.fail("empty condition")
        node = self.or_()
        token = self.peek()
        if token is not None:
            self.fail(f"unexpected {token[1]!r}", token[2])
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.take("word", "or"):
            node = Op("or", (node, self.and_()))
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.take("word", "and"):
            node = Op("and", (node, self.not_()))
        return node

    def not_(self) -> Node:
        if self.take("word", "not"):
            return Op("not", (self.not_(),))
        return self.compare()

    def compare(self) -> Node:
        node = self.atom()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in _COMPARE:
            self.i += 1
            node = Op(token[1], (node, self.atom()))
        return node

    def atom(self) -> Node:
        token = self.peek()
        if token is None:
            self.fail("expected a value")
        kind, text, column = token
        self.i += 1
        if kind == "num":
            return Lit(float(text) if any(c in text for c in ".eE") else int(text))
        if kind == "str":
            return Lit(text[1:-1])
        if kind == "ref":
            return _ref(text, self.where, allow_result=self.allow_result)
        if kind == "op" and text == "(":
            node = self.or_()
            self.expect("op", ")")
            return node
        if kind == "word" and text in _WORDS:
            return Lit(_WORDS[text])
        if kind == "word" and text == "abs":
            self.expect("op", "(")
            node = self.or_()
            self.expect("op", ")")
            return Op("abs", (node,))
        return self.fail(f"unexpected {text!r}", column)


def parse_condition(text: Any, where: str, *, allow_result: bool = False) -> Node:
    """Parse a ``when:`` or ``until:`` condition (a string; a bare boolean is accepted too)."""
    if isinstance(text, bool):
        return Lit(text)
    if not isinstance(text, str):
        raise DefinitionError(f"{where}: a condition must be a string, got {text!r}", hint=CONDITION_HINT)
    return _Parser(text, where, allow_result).parse()
