"""Task functions that the executor tests run, by module name and by ``/path/tasks_for_tests.py:name``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from skyweave.errors import Fatal
from skyweave.model.context import context
from skyweave.model.product import Product
from skyweave.model.signals import InsufficientInput, MissingInput


def noop() -> None:
    return None


def add(x: int, y: int) -> int:
    return x + y


def imported(module: str) -> bool:
    """Whether this process has imported ``module`` (without importing it)."""
    return module in sys.modules


class Decorated:
    """Stands in for a decorated task object: the boundary calls its ``fn``."""

    fn = staticmethod(add)


decorated_add = Decorated()


def make_products(n: int) -> dict[str, Any]:
    ctx = context()
    files = []
    for i in range(n):
        path = ctx.output(f"chip-{i}.evt")
        path.write_text(f"events of chip {i}\n")
        files.append(Product(path, type="ep.l1.events", detector=f"cmos{i}", attributes={"chip": i}))
    summary = ctx.output("sub/summary.txt")
    summary.write_text("summary\n")
    return {
        "files": files,
        "nested": {"summary": (Product(summary, type="text", name="summary", obs_id="obs-override"),)},
        "count": n,
        "where": Path("/somewhere"),
    }


def read_inputs(items: list[Any], single: Product) -> dict[str, Any]:
    def read(value: Any) -> Any:
        if isinstance(value, Product):
            return {"text": Path(value.path).read_text(), "id": value.id, "type": value.type}
        if isinstance(value, dict):
            return {k: read(v) for k, v in value.items()}
        return [read(v) for v in value]

    return {"items": read(items), "single": read(single)}


def pass_through(single: Product) -> Product:
    return single


def needs_attitude(obs_id: str) -> None:
    raise MissingInput(
        "attitude",
        "ep.aux.attitude",
        match={"obs_id": obs_id},
        reason=f"no attitude data for {obs_id}",
        provider_params={"window_s": 600},
    )


def attitude_gap() -> None:
    raise InsufficientInput("attitude", "ep.aux.attitude", reason="gap of 40 s")


def fatal() -> None:
    raise Fatal("the event list has no GTI extension", hint="re-run L1 decoding")


def _deep_helper(value: int) -> int:
    raise ValueError(f"boom with {value}")


def boom() -> int:
    return _deep_helper(42)


def unstorable() -> dict[str, Any]:
    return {"ok": [1, 2], "bad": object()}


def returns_missing_product() -> Product:
    return Product("/nonexistent/skyweave/never.fits")


def chatty() -> str:
    ctx = context()
    print("hello from print")
    print("hello from stderr", file=sys.stderr)
    ctx.log.info("hello from the activity logger")
    os.write(1, b"raw write to fd 1\n")
    subprocess.run([sys.executable, "-c", "import os; os.write(1, b'subprocess on fd 1\\n')"], check=True)
    return "done"


def burn_cpu(seconds: float) -> int:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def touch_file(path: str) -> str:
    Path(path).touch()
    return path


def wait_for_file(path: str, limit_s: float = 30.0) -> str:
    """Runs until ``path`` exists (the test creates it), at most ``limit_s``."""
    end = time.monotonic() + limit_s
    while not Path(path).exists():
        if time.monotonic() > end:
            return "gave up"
        time.sleep(0.01)
    return "seen"


def hang() -> None:
    """Runs until killed (a timeout or cancellation test stops it)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        time.sleep(0.01)


def hard_exit() -> None:
    os._exit(1)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def whoami() -> int:
    return os.getpid()


async def async_add(x: int, y: int) -> int:
    return x + y


def talk_then_hang() -> None:
    print("about to hang", flush=True)
    os.write(2, b"fd-level words\n")
    hang()


def talk_then_exit() -> None:
    print("about to exit", flush=True)
    os.write(1, b"fd-level words\n")
    os._exit(7)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def hold_memory(mb: int, seconds: float = 5.0) -> int:
    """Allocate ``mb`` MB (touched, so it is resident) and hold it for ``seconds``."""
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(seconds)
    return len(block) // 2**20


def pid_then_wait(pid_file: str, path: str) -> str:
    """Write this process's id to ``pid_file``, then run until ``path`` exists (at most 60 s)."""
    Path(pid_file).write_text(str(os.getpid()))
    return wait_for_file(path, limit_s=60.0)


def needs_attitude_from(obs_id: str, archive: Product) -> None:
    """Hands its input product to the provider (e.g. the archive the provider fetches from)."""
    raise MissingInput("attitude", "ep.aux.attitude", match={"obs_id": obs_id},
                       provider_params={"archive": archive, "also": [archive], "margin": 60.0})


def needs_attitude_from_new(obs_id: str) -> None:
    raise MissingInput("attitude", "ep.aux.attitude", match={"obs_id": obs_id},
                       provider_params={"made": Product("made-here.fits")})
