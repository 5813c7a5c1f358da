"""Tokens: the secret is shown once and only its hash is stored; scopes are checked; a revoked,
unknown or malformed token authenticates nobody."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skyweave.errors import ParameterError
from skyweave.server.tokens import authenticate, create_token, hash_secret
from skyweave.store import open_store


def test_a_token_authenticates_until_revoked(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'st.db'}")
    try:
        secret, record = create_token(store, "alice", ["write"])
        assert record.scopes == ["read", "write"]
        assert secret.startswith("sw_") and record.id in secret
        stored = store.list_tokens()[0]
        assert stored.secret_hash == hash_secret(secret) and secret not in repr(stored)
        found = authenticate(store, secret)
        assert found is not None and found.id == record.id
        assert authenticate(store, secret + "x") is None
        assert authenticate(store, secret.removeprefix("sw_")) is None
        assert authenticate(store, "sw_" + "a" * 300) is None
        store.revoke_token(record.id, time.time())
        assert authenticate(store, secret) is None
    finally:
        store.close()


@pytest.mark.parametrize(("name", "scopes", "match"), [
    ("", ["read"], "needs a name"),
    ("bob", [], "needs a scope"),
    ("bob", ["admin"], "unknown scope 'admin'"),
])
def test_bad_token_requests_are_refused(tmp_path: Path, name: str, scopes: list[str], match: str) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'st.db'}")
    try:
        with pytest.raises(ParameterError, match=match):
            create_token(store, name, scopes)
        assert store.list_tokens() == []
    finally:
        store.close()
