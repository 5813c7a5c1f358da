"""The real servers the integration tests use, as started by ``scripts/services.sh``.

``service_url("postgres")`` is the server's URL from ``SKYWEAVE_TEST_POSTGRES_URL`` (the
environment, else the ``.services/env`` file that ``scripts/services.sh start`` writes).  When the
server is not there the test is skipped, saying how to start it, unless the run must have it
(``SKYWEAVE_REQUIRE_SERVICES=1``, set by ``make test``, or ``CI`` set): then it fails, so a CI run
can never pass by skipping what it was meant to test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV_FILE = Path(__file__).resolve().parents[1] / ".services" / "env"

VARIABLES = {"postgres": "SKYWEAVE_TEST_POSTGRES_URL", "redis": "SKYWEAVE_TEST_REDIS_URL",
             "nats": "SKYWEAVE_TEST_NATS_URL", "slurm": "SKYWEAVE_TEST_SLURM_URL"}


def _from_file(variable: str) -> str | None:
    path = Path(os.environ.get("SKYWEAVE_SERVICES_DIR", ENV_FILE.parent)) / "env"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == variable:
            return value.strip()
    return None


def services_required() -> bool:
    """Whether a missing service fails the test instead of skipping it (CI, ``make test``)."""
    flag = os.environ.get("SKYWEAVE_REQUIRE_SERVICES", "").strip().lower()
    ci = os.environ.get("CI", "").strip().lower()
    return flag not in {"", "0", "false", "no"} or ci not in {"", "0", "false", "no"}


def service_url(name: str) -> str:
    """The URL of the running ``name`` server (postgres, redis, nats; for slurm the executor setting
    ``slurm://?conf=…`` of the cluster), or skip/fail the test."""
    variable = VARIABLES[name]
    url = os.environ.get(variable) or _from_file(variable)
    if url:
        return url
    message = (f"{name} is not running for the tests ({variable} unset): start it with "
               f"`scripts/services.sh start {name}` (make test does)")
    if services_required():
        pytest.fail(f"{message}; this run requires its services (SKYWEAVE_REQUIRE_SERVICES or CI set)",
                    pytrace=False)
    pytest.skip(message)
