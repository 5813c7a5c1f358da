"""Per-activity overhead of the container executor against a raw ``docker run`` of the same command
(not a test: run it against a daemon, e.g. the one ``scripts/services.sh start docker`` starts).

    .venv/bin/python bench/containers_bench.py [--n 20] [--reps 3] [--image skyweave-base:py3.11]
                                               [--engine podman]

The same command (``sh -c 'echo N > FILE'``) runs N times, one at a time:

* raw: ``docker run --rm --network none -v DIR:DIR IMAGE sh -c …``, back to back;
* skyweave: a command task with ``image=IMAGE``, N independent activities of one run on the
  ``docker`` executor with one slot (``Client.run``: store, bus, controller, a host-side
  ``skyweave.execute`` per activity that renders the command, runs the container, checksums and
  stores the output); the run's wall time from submission to its end.

Prints the wall time per activity of each, their ratio and difference (skyweave's overhead per
activity), medians over ``--reps`` alternating repetitions.  The Python path (``python -m
skyweave.execute`` inside the skyweave image) is timed with ``--python`` against a raw ``docker
run IMAGE python -c pass``.  ``--engine podman``: the same with the podman client
``scripts/services.sh start podman`` wrote (``SKYWEAVE_TEST_PODMAN_BIN``; raw ``podman run``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec

from skyweave import Client, command, workflow
from skyweave.authoring.loader import load_task
from skyweave.authoring.task import Task
from skyweave.executors.containers import ContainerRuntime

DOCKER = "/usr/bin/docker"
ROOT = Path(__file__).resolve().parents[1]


def _service(variable: str) -> str:
    env = ROOT / ".services" / "env"
    for line in env.read_text().splitlines() if env.is_file() else []:
        key, _, value = line.partition("=")
        if key == variable:
            return value
    return ""


def _setting(engine: str, image: str) -> str:
    """The executor setting of the engine the services script started (docker: its daemon)."""
    if engine == "podman":
        client = os.environ.get("SKYWEAVE_TEST_PODMAN_BIN") or _service("SKYWEAVE_TEST_PODMAN_BIN")
        if not client:
            sys.exit("no podman: scripts/services.sh start podman (and scripts/images.sh --engine podman)")
        return "podman://?" + urlencode({"binary": client, "image": image, "network": "none"})
    host = os.environ.get("DOCKER_HOST") or _service("SKYWEAVE_TEST_DOCKER_HOST")
    if not host:
        sys.exit("no docker daemon: scripts/services.sh start docker (or set DOCKER_HOST)")
    return "docker://?" + urlencode({"host": host, "binary": DOCKER, "image": image, "network": "none"})


def raw(setting: str, image: str, n: int, folder: Path, python: bool) -> float:
    client = ContainerRuntime.parse(setting).client
    start = time.perf_counter()
    for i in range(n):
        inner = (["python", "-c", f"open('{folder}/raw{i}.txt', 'w').write('{i}')"] if python
                 else ["sh", "-c", f"echo {i} > {folder}/raw{i}.txt"])
        subprocess.run([*client, "run", "--rm", "--network", "none", "-v", f"{folder}:{folder}",
                        image, *inner], check=True, capture_output=True)
    return (time.perf_counter() - start) / n


ECHO = command("bench_echo", "sh -c 'echo {params.i} > {outputs.out}'", parameters={"i": "int"},
               outputs={"out": "out.txt"}, image="IMAGE", cache=False)


PY_WRITE = load_task(f"{Path(__file__).resolve().parent / 'workloads' / 'container_task.py'}:py_write")
"""By path: the executor mounts its folder, and the container imports only that light module."""


@workflow
def many(n: int) -> Any:
    return [ECHO(i=i) for i in range(n)]


@workflow
def many_py(n: int) -> Any:
    return [PY_WRITE(i=i) for i in range(n)]


def through_skyweave(setting: str, image: str, n: int, folder: Path, python: bool) -> float:
    globals()["ECHO"] = Task(msgspec.structs.replace(ECHO.spec, image=image))  # what `many` calls
    with Client(str(folder / "store"), executor=setting, container=setting, workers=1) as client:
        start = time.perf_counter()
        handle = client.run(many_py if python else many, {"n": n}, timeout=3600)
        wall = time.perf_counter() - start
        assert handle.status == "succeeded", handle.summary()
    return wall / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--image", default="")
    parser.add_argument("--python", action="store_true", help="Python tasks in the skyweave image")
    parser.add_argument("--engine", choices=["docker", "podman"], default="docker")
    args = parser.parse_args()
    image = args.image or ("skyweave:local" if args.python else "skyweave-base:py3.11")
    setting = _setting(args.engine, image)
    raws, ours = [], []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="skyweave-cbench-") as tmp:
            folder = Path(tmp)
            raws.append(raw(setting, image, args.n, folder, args.python))
            ours.append(through_skyweave(setting, image, args.n, folder, args.python))
        print(f"rep {rep + 1}: raw {raws[-1]:.3f} s, skyweave {ours[-1]:.3f} s per activity", flush=True)
    r, s = statistics.median(raws), statistics.median(ours)
    kind = "python task" if args.python else "command task"
    print(f"{kind} in {image}, n={args.n}, reps={args.reps}, load average {os.getloadavg()[0]:.1f}: "
          f"raw {args.engine} run {r:.3f} s, skyweave {s:.3f} s per activity; ratio {s / r:.2f}, "
          f"overhead {1000 * (s - r):.0f} ms per activity")


if __name__ == "__main__":
    main()
