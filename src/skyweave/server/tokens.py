"""API tokens: ``sw_<id>_<secret>``, shown once when created; the store keeps the sha256 of the
whole token (a random 256-bit secret needs no slow hash), its name and scopes.

Scopes: ``read`` (look at runs, products, provenance) and ``write`` (submit, control, upload),
which implies ``read``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable

from skyweave.errors import ParameterError
from skyweave.model.ids import new_id
from skyweave.model.records import TokenRecord
from skyweave.store.base import Store

SCOPES = ("read", "write")
PREFIX = "sw_"


def hash_secret(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise ParameterError(f"unknown scope {unknown[0]!r}" if unknown else "a token needs a scope",
                             hint="give --scope read or --scope write (write implies read)")
    return sorted({*chosen, "read"})


def create_token(store: Store, name: str, scopes: Iterable[str]) -> tuple[str, TokenRecord]:
    """A new token: ``(the token itself, to hand over once; its record as stored)``."""
    if not name.strip():
        raise ParameterError("a token needs a name", hint="say whose it is: --name alice-notebook")
    token_id = new_id("tok")
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    record = TokenRecord(id=token_id, name=name.strip(), scopes=check_scopes(scopes),
                         secret_hash=hash_secret(token), created_at=time.time())
    store.add_token(record)
    return token, record


def authenticate(store: Store, token: str) -> TokenRecord | None:
    """The live token record of ``token``; ``None`` if it is unknown, malformed or revoked."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    record = store.token_by_hash(hash_secret(token))
    if record is None or record.revoked_at is not None:
        return None
    return record
