"""``python -m skyweave.stage MODULE:TASK [--PARAM VALUE ...] --out DIR [--result FILE]``: run one
``@task`` of any importable module alone, as a pipeline's own stage command would
(``standalone.py``: parameters as options, products as paths or ``@FILE``, the result as JSON).

What the steps of an exported Argo workflow run for Python tasks (``argo.py``), in an image that
holds skyweave and the workflow's code.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence

from skyweave.authoring.loader import load_object
from skyweave.authoring.task import Task
from skyweave.standalone import stage_main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        sys.stderr.write("usage: python -m skyweave.stage MODULE:TASK [--PARAM VALUE ...] --out DIR "
                         "[--result FILE]\n")
        return 2
    task = load_object(args[0])
    if not isinstance(task, Task):
        sys.stderr.write(f"{args[0]} is a {type(task).__name__}, not a @task\n")
        return 2
    return stage_main({task.spec.name: task}, prog=f"python -m skyweave.stage {args[0]}",
                      argv=[task.spec.name, *_inline_json_to_files(args[1:])])


def _inline_json_to_files(args: list[str]) -> list[str]:
    """Values that are JSON objects or lists (a previous step's product or list of products, as
    Argo hands them over) written to files and passed as ``@FILE``, which the stage reads back."""
    out: list[str] = []
    for value in args:
        if value[:1] in ("{", "["):
            try:
                json.loads(value)
            except ValueError:
                out.append(value)
                continue
            handle, path = tempfile.mkstemp(prefix="skyweave-arg-", suffix=".json")
            with os.fdopen(handle, "w") as file:
                file.write(value)
            out.append(f"@{path}")
        else:
            out.append(value)
    return out


if __name__ == "__main__":
    sys.exit(main())
