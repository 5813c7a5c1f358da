"""What every CLI module shares: the ``--store`` and ``--json`` options and the ``friendly`` wrapper.

Kept apart from ``cli/main.py`` so that command modules (``cli/lineage.py``...) can use them
without importing ``main``, which imports them to register their commands.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Annotated, Any, TextIO, TypeVar

import typer

from skyweave.cli import output
from skyweave.errors import SkyweaveError

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store directory or URL "
                                              "(default ./.skyweave or $SKYWEAVE_STORE).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def friendly(fn: F) -> F:
    """Turn skyweave errors into one clear message and an exit code, never a bare traceback;
    skyweave's own warnings print as ``warning: ...`` lines (not as Python's file:line format)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                return fn(*args, **kwargs)
        except SkyweaveError as exc:
            output.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


_default_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    if issubclass(category, UserWarning) and category.__module__.startswith("skyweave"):
        output.warning(str(message))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)

EXECUTOR_HELP = ("local (processes), threads, subprocess (a process per activity), "
                 "slurm://?partition=… (a Slurm job per activity), or another executor registered in "
                 "skyweave.executors.")
