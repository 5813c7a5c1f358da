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
             "nats": "SKYWEAVE_TEST_NATS_URL", "slurm": "SKYWEAVE_TEST_SLURM_URL",
             "docker": "SKYWEAVE_TEST_DOCKER_HOST", "podman": "SKYWEAVE_TEST_PODMAN_BIN",
             "dask": "SKYWEAVE_TEST_DASK_URL", "moto": "SKYWEAVE_TEST_S3_URL"}


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
    """The URL of the running ``name`` server (postgres, redis, nats, moto, docker: its socket; for
    slurm the executor setting ``slurm://?conf=…`` of the cluster; for podman, which has no daemon,
    its client with the test storage), or skip/fail the test."""
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


DOCKER_BIN = "/usr/bin/docker"
"""Debian's docker.io client (the one scripts/services.sh installs beside its daemon)."""
_built: set[tuple[str, str]] = set()


def docker_image(image: str) -> str:
    """The docker daemon's address once ``image`` is there (``scripts/images.sh`` builds it if it is
    missing: once a run, the daemon keeps it), or skip/fail as ``service_url`` does."""
    host = service_url("docker")
    _ensure_image("docker", [DOCKER_BIN, "-H", host], image, {"DOCKER_HOST": host})
    return host


def podman_image(image: str) -> str:
    """The test podman client (``scripts/services.sh start podman``) once ``image`` is in its storage
    (``scripts/images.sh --engine podman`` copies it from the test docker when that runs, else
    builds it), or skip/fail as ``service_url`` does."""
    client = service_url("podman")
    env = {"SKYWEAVE_PODMAN": client}
    docker = os.environ.get(VARIABLES["docker"]) or _from_file(VARIABLES["docker"])
    if docker:  # docker builds it anyway: podman copies it (~10 s) rather than building it again
        env["DOCKER_HOST"] = docker_image(image)
    _ensure_image("podman", [client], image, env)
    return client


def _ensure_image(engine: str, client: list[str], image: str, env: dict[str, str]) -> None:
    import subprocess

    if (client[-1], image) in _built:
        return
    have = subprocess.run([*client, "image", "inspect", image], capture_output=True, check=False)
    if have.returncode != 0:
        root = Path(__file__).resolve().parents[1]
        built = subprocess.run([str(root / "scripts" / "images.sh"), "--engine", engine, image],
                               env={**os.environ, **env}, capture_output=True, text=True, check=False)
        assert built.returncode == 0, f"scripts/images.sh --engine {engine} {image} failed:\n{built.stderr[-3000:]}"
    _built.add((client[-1], image))


def docker_setting(image: str = "skyweave:local", **options: str) -> str:
    """A ``docker://`` executor setting for the test daemon, ``image`` as its default image."""
    from urllib.parse import urlencode

    host = docker_image(image)
    return "docker://?" + urlencode({"host": host, "binary": DOCKER_BIN, "image": image,
                                     "network": "none", **options})


def podman_setting(image: str = "skyweave:local", **options: str) -> str:
    """A ``podman://`` executor setting for the test podman, ``image`` as its default image."""
    from urllib.parse import urlencode

    client = podman_image(image)
    return "podman://?" + urlencode({"binary": client, "image": image, "network": "none", **options})


def container_setting(engine: str, image: str = "skyweave:local", **options: str) -> str:
    """``docker_setting`` or ``podman_setting``."""
    return (podman_setting if engine == "podman" else docker_setting)(image, **options)
