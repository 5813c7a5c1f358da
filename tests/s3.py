"""A fresh bucket on the moto S3 server that ``scripts/services.sh`` starts (``moto``), with the
endpoint and throw-away credentials in the environment, where boto looks for them."""

from __future__ import annotations

import uuid

import pytest

from tests.services import service_url

SECRET = "skyweave-test-secret-9f1c2e7d"
"""The secret key the tests use: it must never appear in the store, the bucket or provenance."""


def s3_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's endpoint and credentials set as ``AWS_*`` variables (also returned, for a
    child process's environment)."""
    pytest.importorskip("s3fs", reason="s3:// storage needs skyweave[s3] (in the dev extra)")
    values = {"AWS_ENDPOINT_URL": service_url("moto"), "AWS_ACCESS_KEY_ID": "skyweave-test-key",
              "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def new_bucket(monkeypatch: pytest.MonkeyPatch) -> str:
    """The name of a new, empty bucket."""
    from skyweave.storage.s3 import filesystem

    s3_environment(monkeypatch)
    bucket = f"skyweave-{uuid.uuid4().hex[:16]}"
    filesystem().mkdir(bucket)
    return bucket
