"""Store contract, API tokens (revision 0006): kept by the hash of their secret, listed, revoked
once (a second revocation keeps the first time), unknown ids refused."""

from __future__ import annotations

import pytest

from skyweave.errors import NotFoundError
from skyweave.model.records import TokenRecord
from skyweave.store import Store


def token(id: str, secret_hash: str, **fields: object) -> TokenRecord:
    values: dict[str, object] = {"id": id, "name": f"user {id}", "scopes": ["read"],
                                 "secret_hash": secret_hash, "created_at": 1.0}
    return TokenRecord(**{**values, **fields})  # type: ignore[arg-type]


def test_tokens_are_found_by_hash_listed_and_revoked(store: Store) -> None:
    store.add_token(token("tok-1", "sha256:aa", created_at=2.0))
    store.add_token(token("tok-2", "sha256:bb", scopes=["read", "write"], created_at=1.0))
    assert [t.id for t in store.list_tokens()] == ["tok-2", "tok-1"]
    found = store.token_by_hash("sha256:bb")
    assert found is not None and found.scopes == ["read", "write"] and found.revoked_at is None
    assert store.token_by_hash("sha256:cc") is None
    assert store.revoke_token("tok-2", 5.0).revoked_at == 5.0
    assert store.revoke_token("tok-2", 9.0).revoked_at == 5.0
    again = store.token_by_hash("sha256:bb")
    assert again is not None and again.revoked_at == 5.0
    with pytest.raises(NotFoundError, match="tokens list"):
        store.revoke_token("tok-9", 1.0)


def test_two_tokens_cannot_share_a_hash(store: Store) -> None:
    store.add_token(token("tok-1", "sha256:aa"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.add_token(token("tok-2", "sha256:aa"))
    assert [t.id for t in store.list_tokens()] == ["tok-1"]
