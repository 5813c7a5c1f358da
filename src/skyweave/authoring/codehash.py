"""Code hash of a Python task: its code plus the helpers and module constants it reaches.

Peers hash only the task's own source, so editing a helper function or a module constant silently
reuses stale results (redun #99, Prefect #23062).  We follow the global names the function's
bytecode loads (and ``module.name`` through the user's own modules) into functions, classes and
constants of *user* modules (not the standard library or site-packages, except the task's own
package), transitively, and into the functions' default values and closures.

* Code is hashed as its normalised source (``ast.unparse`` without docstrings), so reformatting,
  comments and docstrings keep the hash; any change to what runs changes it.
* Constants of every type ``canonical`` can serialise deterministically are hashed by value:
  ``GAINS = {...}``, lists, sets, tuples, nested ones, numpy arrays, dataclasses...
* Library functions and classes are hashed by their qualified name (which one is called), not by
  their code: a library's version is the environment's business.
* A global a reached function loads that its module does not define yet (a helper or constant
  written below the ``@task``, the usual order in a module) is listed in ``CodeHash.pending``: the
  task hashes itself again once its module has defined it (``Task.spec``), so the hash never misses
  code that merely comes later in the file.
* A reached value that cannot be serialised deterministically (a lock, a session, an open file...)
  is listed in ``CodeHash.unhashable``; ``@task`` then refuses to cache the task unless it has an
  explicit ``version=`` (the user vouches for it) or ``cache=False``.
"""

from __future__ import annotations

import ast
import builtins
import dis
import hashlib
import inspect
import sys
import sysconfig
import textwrap
import types
from typing import Any, NamedTuple

from skyweave.authoring.canonical import NotCanonical, canonical, qualified
from skyweave.authoring.cellsource import class_source, function_source

_LIB_PATHS = tuple(
    p for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("purelib"),
                sysconfig.get_paths().get("platlib")} if p
)
_LOADS_GLOBAL = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_LOADS_ATTR = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


class Unhashable(NamedTuple):
    """A value a task reaches that has no deterministic serialisation."""

    name: str
    """The global's name (``module.name`` when reached through a module)."""
    reached_from: str
    """The qualified name of the function or class whose code uses it."""
    type_name: str
    where: str
    """Where inside the value the offending part sits (``""``: the value itself)."""

    def describe(self) -> str:
        inside = f" (at {self.name}{self.where})" if self.where else ""
        return f"global {self.name!r} used by {self.reached_from} is a {self.type_name}{inside}"


class CodeHash(NamedTuple):
    digest: str
    """``sha256:<hex>``."""
    unhashable: tuple[Unhashable, ...]
    pending: tuple[tuple[dict[str, Any], str], ...] = ()
    """Globals loaded by the reached code that were not defined when hashed (module namespace, name):
    the hash is final once they are (``defined_since``)."""

    def defined_since(self) -> bool:
        """Whether a global that was pending when this hash was made is defined now."""
        return any(name in namespace for namespace, name in self.pending)


def code_hash(fn: Any) -> str:
    """``sha256:<hex>`` over the function's code and everything user-defined it reaches."""
    return hash_code(fn).digest


def hash_code(fn: Any) -> CodeHash:
    """The code hash of ``fn`` and the reached values it could not include."""
    fn = getattr(fn, "fn", fn)
    hasher = _Hasher(_top_package(getattr(fn, "__module__", None)))
    hasher.follow(fn, root=True)
    hasher.run()
    return CodeHash("sha256:" + hasher.digest.hexdigest(), tuple(hasher.unhashable), tuple(hasher.pending))


def _top_package(module_name: str | None) -> str:
    return (module_name or "").split(".")[0]


class _Hasher:
    def __init__(self, package: str) -> None:
        self.package = package
        self.digest = hashlib.sha256()
        self.stack: list[Any] = []
        self.seen: set[int] = set()
        self.values: set[tuple[int, str]] = set()
        self.unhashable: list[Unhashable] = []
        self.pending: list[tuple[dict[str, Any], str]] = []

    # -- what is the user's ------------------------------------------------------------------------
    def is_user_module(self, module_name: str | None) -> bool:
        if not module_name or module_name in sys.builtin_module_names:
            return False
        if module_name.startswith("skyweave.") and not module_name.startswith("skyweave.testing"):
            return False
        module = sys.modules.get(module_name)
        path = getattr(module, "__file__", None)
        if not path:
            return module_name == "__main__"
        if self.package and _top_package(module_name) == self.package and self.package != "skyweave":
            return True  # the task's own package, even installed in site-packages
        return not any(path.startswith(p) for p in _LIB_PATHS)

    def is_user_class(self, cls: type) -> bool:
        return self.is_user_module(getattr(cls, "__module__", None))

    def follow(self, obj: Any, *, root: bool = False) -> bool:
        """Queue a function or class for hashing if it is the user's (the task's own function
        always is, even once its module has left ``sys.modules``); whether it is."""
        obj = getattr(obj, "fn", obj)  # a decorated task: its function
        obj = inspect.unwrap(obj) if isinstance(obj, types.FunctionType) else obj
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        if not isinstance(obj, types.FunctionType | type):
            return False
        if not root and not self.is_user_module(obj.__module__):
            return False
        self.stack.append(obj)
        return True

    # -- the walk ----------------------------------------------------------------------------------
    def run(self) -> None:
        while self.stack:
            obj = self.stack.pop()
            if id(obj) in self.seen:
                continue
            self.seen.add(id(obj))
            # by qualified name only: the same file imported as `pipeline` or loaded by path (under
            # another module name) is the same code
            self.digest.update(f"\x01{obj.__qualname__}\x01".encode())
            self.digest.update(_normalised_source(obj).encode())
            if isinstance(obj, type):
                self._class(obj)
            else:
                self._function(obj)

    def _class(self, cls: type) -> None:
        for name, member in vars(cls).items():
            if name.startswith("__") or (name.startswith("_") and name.endswith("_")):
                continue  # Python's and enum's own members
            inner = getattr(member, "__func__", None) or getattr(member, "fget", None) or member
            if isinstance(inner, types.FunctionType | type):
                self.follow(inner)
            else:
                self._value(f"{cls.__qualname__}.{name}", member, qualified(cls), (id(cls), name))

    def _function(self, fn: types.FunctionType) -> None:
        owner = qualified(fn)
        if fn.__defaults__:
            self._value(f"{fn.__qualname__} defaults", fn.__defaults__, owner, (id(fn), "defaults"))
        if fn.__kwdefaults__:
            self._value(f"{fn.__qualname__} defaults", fn.__kwdefaults__, owner, (id(fn), "kwdefaults"))
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            self._value(name, content, owner, (id(cell), name))
        module_globals: dict[str, Any] = fn.__globals__
        for chain in sorted(_global_chains(fn.__code__)):
            name = chain[0]
            if name not in module_globals:
                if not hasattr(builtins, name):  # not defined yet: written below, or never bound
                    self.pending.append((module_globals, name))
                continue
            value = module_globals[name]
            label = name
            for attr in chain[1:]:
                if not (isinstance(value, types.ModuleType) and self.is_user_module(value.__name__)):
                    break
                if not hasattr(value, attr):
                    break
                value = getattr(value, attr)
                label = f"{label}.{attr}"
            if isinstance(value, types.ModuleType):
                continue  # a library module (its names are in the source), or one we went through
            self._value(label, value, owner, (id(module_globals), label))

    def _value(self, label: str, value: Any, owner: str, key: tuple[int, str]) -> None:
        if key in self.values:
            return
        self.values.add(key)
        try:
            data = canonical(value, code=self.follow, is_user_class=self.is_user_class)
        except NotCanonical as exc:
            self.unhashable.append(Unhashable(label, owner, exc.type_name, exc.where))
            return
        self.digest.update(f"\x02{label}=".encode())
        self.digest.update(data)


def _global_chains(code: types.CodeType) -> set[tuple[str, ...]]:
    """Every global a code object (and the code nested in it) loads, with the attribute names read
    right after it: ``os.path.join`` gives ``("os", "path", "join")``."""
    chains: set[tuple[str, ...]] = set()
    todo = [code]
    while todo:
        current = todo.pop()
        chain: list[str] = []
        for ins in dis.get_instructions(current):
            if ins.opname in _LOADS_GLOBAL:
                if chain:
                    chains.add(tuple(chain))
                chain = [str(ins.argval)]
            elif ins.opname in _LOADS_ATTR and chain:
                chain.append(str(ins.argval))
            elif chain:
                chains.add(tuple(chain))
                chain = []
        if chain:
            chains.add(tuple(chain))
        todo.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return chains


def _normalised_source(obj: Any) -> str:
    """The source without comments, docstrings or formatting (``ast.unparse``); the bytecode when
    there is no source (defined in a REPL)."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        # a notebook cell's class, python -c: the source the session kept
        kept = function_source(obj) if isinstance(obj, types.FunctionType) else class_source(obj)
        code = getattr(obj, "__code__", None)
        if kept is None:
            return _code_text(code) if code is not None else qualified(obj)
        source = kept
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:  # e.g. a lambda in the middle of an expression: its lines as they are
        return source
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _code_text(code: types.CodeType) -> str:
    consts = [_code_text(c) if isinstance(c, types.CodeType)
              else repr(sorted(map(repr, c))) if isinstance(c, frozenset) else repr(c)
              for c in code.co_consts]
    return f"{code.co_code.hex()}|{consts}|{code.co_names}"
