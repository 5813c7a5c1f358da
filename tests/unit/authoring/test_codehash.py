"""The code hash covers what a task's result depends on: its code, its helpers and every constant
it reaches, of any type that can be serialised deterministically; formatting does not count."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import skyweave
from skyweave.authoring.codehash import CodeHash, hash_code
from skyweave.errors import DefinitionError

_versions = itertools.count()


def load(tmp_path: Path, source: str, name: str = "cw_mod", **others: str) -> ModuleType:
    """Import ``source`` as module ``name`` (from a fresh folder, so each version is new code)."""
    folder = tmp_path / f"v{next(_versions)}"
    folder.mkdir()
    for other, text in others.items():
        (folder / f"{other}.py").write_text(textwrap.dedent(text))
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    try:
        for module in [name, *others]:
            sys.modules.pop(module, None)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(folder))


def code_of(tmp_path: Path, source: str, task: str = "work", **others: str) -> CodeHash:
    try:
        return hash_code(getattr(load(tmp_path, source, **others), task))
    finally:
        for module in ["cw_mod", *others]:
            sys.modules.pop(module, None)


def digest(tmp_path: Path, source: str, **others: str) -> str:
    hashed = code_of(tmp_path, source, **others)
    assert not hashed.unhashable, hashed.unhashable
    return hashed.digest


BASE = '''
GAINS = {"a": 1.0, "b": 2.0}


def helper(x):
    return x * GAINS["a"]


def work(x):
    return helper(x) + 1
'''


def test_same_code_same_hash(tmp_path: Path) -> None:
    assert digest(tmp_path, BASE) == digest(tmp_path, BASE)


def test_an_edit_of_the_body_is_a_new_hash(tmp_path: Path) -> None:
    assert digest(tmp_path, BASE) != digest(tmp_path, BASE.replace("helper(x) + 1", "helper(x) + 2"))


def test_an_edit_of_a_helper_is_a_new_hash(tmp_path: Path) -> None:
    assert digest(tmp_path, BASE) != digest(tmp_path, BASE.replace('x * GAINS["a"]', 'x / GAINS["a"]'))


def test_an_edit_of_a_dict_constant_reached_through_a_helper_is_a_new_hash(tmp_path: Path) -> None:
    """The bug of the issue: editing ``GAINS = {...}`` kept the old hash."""
    assert digest(tmp_path, BASE) != digest(tmp_path, BASE.replace('"a": 1.0', '"a": 1.5'))


CONSTANTS = [
    ("int", "3", "4"),
    ("float", "0.5", "0.25"),
    ("str", "'gain'", "'gains'"),
    ("bytes", "b'ab'", "b'ac'"),
    ("bool", "True", "False"),
    ("complex", "1+2j", "1+3j"),
    ("none to value", "None", "0"),
    ("list", "[1, 2, 3]", "[1, 2, 4]"),
    ("list order", "[1, 2]", "[2, 1]"),
    ("tuple", "(1, 'a')", "(1, 'b')"),
    ("dict value", "{'a': 1}", "{'a': 2}"),
    ("dict key", "{'a': 1}", "{'b': 1}"),
    ("set", "{'x', 'y'}", "{'x', 'z'}"),
    ("frozenset", "frozenset({1, 2})", "frozenset({1, 3})"),
    ("nested", "{'bands': [{'f': 1.4e9, 'w': (1, 2)}]}", "{'bands': [{'f': 1.4e9, 'w': (1, 3)}]}"),
    ("nested set", "{'a': [frozenset({'p'})]}", "{'a': [frozenset({'q'})]}"),
    ("range", "range(3)", "range(4)"),
    ("path", "pathlib.Path('cal/a.fits')", "pathlib.Path('cal/b.fits')"),
    ("regex", "re.compile('a+')", "re.compile('b+')"),
    ("numpy array", "numpy.array([1.0, 2.0])", "numpy.array([1.0, 2.5])"),
    ("numpy dtype", "numpy.array([1, 2], dtype='int32')", "numpy.array([1, 2], dtype='int64')"),
    ("numpy scalar", "numpy.float32(1.5)", "numpy.float32(2.5)"),
    ("dataclass", "Config(gain=1.0)", "Config(gain=2.0)"),
    ("object", "Plain(3)", "Plain(4)"),
    ("enum", "Band.LOW", "Band.HIGH"),
    ("partial", "functools.partial(int, base=2)", "functools.partial(int, base=8)"),
]

CONSTANT_MODULE = '''
import dataclasses
import enum
import functools
import pathlib
import re

import numpy


@dataclasses.dataclass(frozen=True)
class Config:
    gain: float


class Plain:
    def __init__(self, n):
        self.n = n


class Band(enum.Enum):
    LOW = 1
    HIGH = 2


VALUE = {value}


def work():
    return VALUE
'''


@pytest.mark.parametrize(("before", "after"), [c[1:] for c in CONSTANTS], ids=[c[0] for c in CONSTANTS])
def test_an_edit_of_a_constant_of_each_type_is_a_new_hash(tmp_path: Path, before: str, after: str) -> None:
    first = digest(tmp_path, CONSTANT_MODULE.format(value=before))
    assert digest(tmp_path, CONSTANT_MODULE.format(value=before)) == first
    assert digest(tmp_path, CONSTANT_MODULE.format(value=after)) != first


def test_a_constant_that_names_another_one_is_hashed_by_value(tmp_path: Path) -> None:
    source = "BASE = {base}\nSETTINGS = {{'gains': BASE, 'n': 2}}\n\ndef work():\n    return SETTINGS['gains']\n"
    assert digest(tmp_path, source.format(base="[1, 2]")) != digest(tmp_path, source.format(base="[1, 3]"))


def test_constants_and_helpers_of_another_user_module_count(tmp_path: Path) -> None:
    source = "import cw_helpers\n\ndef work(x):\n    return cw_helpers.scale(x) + cw_helpers.OFFSET\n"
    helpers = "GAIN = {gain}\nOFFSET = {offset}\n\ndef scale(x):\n    return x * GAIN\n"
    base = digest(tmp_path, source, cw_helpers=helpers.format(gain=2, offset=1))
    assert digest(tmp_path, source, cw_helpers=helpers.format(gain=2, offset=1)) == base
    assert digest(tmp_path, source, cw_helpers=helpers.format(gain=3, offset=1)) != base  # via scale()
    assert digest(tmp_path, source, cw_helpers=helpers.format(gain=2, offset=5)) != base  # module.NAME


def test_default_values_and_methods_count(tmp_path: Path) -> None:
    source = '''
    LIMITS = (1, {hi})


    class Scaler:
        FACTOR = {factor}

        def apply(self, x):
            return x * self.FACTOR


    def work(x, limits=LIMITS):
        return Scaler().apply(min(max(x, limits[0]), limits[1]))
    '''
    base = digest(tmp_path, source.format(hi=9, factor=2))
    assert digest(tmp_path, source.format(hi=8, factor=2)) != base
    assert digest(tmp_path, source.format(hi=9, factor=3)) != base


def test_formatting_comments_and_docstrings_keep_the_hash(tmp_path: Path) -> None:
    edited = '''
    # calibration gains, measured 2026-11
    GAINS = {
        "a": 1.0,   # antenna a
        "b": 2.0,
    }


    def helper(x):
        """Scale by the gain of antenna a."""
        return x*GAINS[ 'a' ]


    def work(x):

        # one more than the helper says
        return (helper(x)
                + 1)
    '''
    assert digest(tmp_path, edited) == digest(tmp_path, BASE)


def test_a_set_hashes_by_its_members_not_their_order(tmp_path: Path) -> None:
    """Set iteration order depends on insertion history (and, for strings, on the per-process hash
    seed); the hash must not: members are sorted."""
    first, second = {1, 9}, {9, 1}
    assert list(first) != list(second)  # same members, different order in memory
    source = "VALUE = {value}\n\ndef work():\n    return VALUE\n"
    assert digest(tmp_path, source.format(value="{1, 9}")) == digest(tmp_path, source.format(value="{9, 1}"))
    assert digest(tmp_path, source.format(value="frozenset({1, 9})")) == digest(
        tmp_path, source.format(value="frozenset({9, 1})"))


UNHASHABLE = '''
import threading

import skyweave

LOCK = threading.Lock()
TABLE = {"ok": 1, "bad": [LOCK]}


def helper():
    with LOCK:
        return 1


@skyweave.task
def work() -> int:
    return helper() + TABLE["ok"]


@skyweave.task(version="1")
def vouched() -> int:
    return helper()


@skyweave.task(cache=False)
def uncached() -> int:
    return helper()


@skyweave.workflow
def flow() -> Any:
    return work()
'''


def test_a_reached_value_that_cannot_be_hashed_is_named(tmp_path: Path) -> None:
    hashed = code_of(tmp_path, UNHASHABLE.replace("-> Any", ""))
    found = {(u.name, u.where, u.type_name) for u in hashed.unhashable}
    assert ("LOCK", "", "_thread.lock") in found
    assert ("TABLE", "['bad'][0]", "_thread.lock") in found


def test_a_task_that_reaches_an_unhashable_value_is_refused_unless_vouched_for(tmp_path: Path) -> None:
    module: Any = load(tmp_path, "from typing import Any\n" + UNHASHABLE)
    try:
        with pytest.raises(DefinitionError) as caught:
            module.flow.build({})
        assert "task 'work'" in caught.value.message and "'LOCK'" in caught.value.message
        assert "version=" in (caught.value.hint or "")
        with skyweave.Client(str(tmp_path / "store"), engine=False) as client, \
                pytest.raises(DefinitionError, match="cannot be cached safely"):
            client.register_task(module.work)
        assert module.vouched.unhashable == () and module.uncached.unhashable == ()
        assert module.work() == 2  # called directly (a unit test of the function) it still runs
    finally:
        sys.modules.pop("cw_mod", None)


def test_library_functions_are_named_not_read(tmp_path: Path) -> None:
    source = "import math\nfrom os.path import {f} as pick\n\ndef work(p):\n    return pick(p), math.pi\n"
    assert digest(tmp_path, source.format(f="basename")) != digest(tmp_path, source.format(f="dirname"))


BELOW = '''
import skyweave


@skyweave.task
def work(x: float) -> float:
    return helper(x) * FACTOR


def helper(x):
    return x + OFFSET


FACTOR = {factor}
OFFSET = {offset}
'''

ABOVE = '''
import skyweave

FACTOR = {factor}
OFFSET = {offset}


def helper(x):
    return x + OFFSET


@skyweave.task
def work(x: float) -> float:
    return helper(x) * FACTOR
'''


def task_of(tmp_path: Path, source: str) -> Any:
    try:
        made = load(tmp_path, source).work
        made.spec  # noqa: B018 -- once its module is imported, as a worker or a Client sees it
        return made
    finally:
        sys.modules.pop("cw_mod", None)


def test_helpers_and_constants_written_below_the_task_count(tmp_path: Path) -> None:
    """The usual order of a module (the task first, its helpers and constants after) is hashed as
    fully as the reverse: when ``@task`` runs they are not defined yet, and a stale result of the
    old code must not be reused after an edit down there."""
    first = task_of(tmp_path, BELOW.format(factor=2, offset=1)).spec
    assert task_of(tmp_path, BELOW.format(factor=3, offset=1)).spec.code_hash != first.code_hash
    edited = task_of(tmp_path, BELOW.format(factor=2, offset=5)).spec  # reached through the helper
    assert (edited.code_hash, edited.version) != (first.code_hash, first.version)
    # where the names are written does not matter, only what they are
    assert task_of(tmp_path, ABOVE.format(factor=2, offset=1)).spec.code_hash == first.code_hash
    assert task_of(tmp_path, BELOW.format(factor=2, offset=1)).spec.code_hash == first.code_hash


def test_a_name_that_is_never_defined_does_not_stop_the_task(tmp_path: Path) -> None:
    source = "import skyweave\n\n@skyweave.task\ndef work(x: int) -> int:\n    return x if x else missing_name\n"
    made = task_of(tmp_path, source)
    assert made.spec.code_hash == made.spec.code_hash and made(1) == 1
