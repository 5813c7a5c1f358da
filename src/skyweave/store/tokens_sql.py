"""The server's API tokens in a SQL store (``TokenRegistry``): rows of ``api_tokens`` holding the
sha256 of each secret.  Shared by the SQL backends; the backend provides ``url``, ``_engine``
(reads) and ``_writer`` (write transactions)."""

from __future__ import annotations

from sqlalchemy import Engine, insert, select, update

from skyweave.errors import NotFoundError
from skyweave.model.records import TokenRecord
from skyweave.store.base import Store
from skyweave.store.schema import TOKEN, api_tokens


class TokenRegistry(Store):
    """``add_token``, ``list_tokens``, ``token_by_hash`` and ``revoke_token`` in SQL."""

    url: str
    _engine: Engine
    _writer: Engine

    def add_token(self, token: TokenRecord) -> None:
        with self._writer.begin() as conn:
            conn.execute(insert(api_tokens).values(**TOKEN.to_row(token)))

    def list_tokens(self) -> list[TokenRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(*TOKEN.columns).order_by(api_tokens.c.created_at)).all()
        return [TOKEN.from_row(r) for r in rows]

    def token_by_hash(self, secret_hash: str) -> TokenRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(*TOKEN.columns).where(api_tokens.c.secret_hash == secret_hash)).first()
        return None if row is None else TOKEN.from_row(row)

    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        with self._writer.begin() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == token_id,
                                                  api_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
            row = conn.execute(select(*TOKEN.columns).where(api_tokens.c.id == token_id)).first()
        if row is None:
            raise NotFoundError(f"no token {token_id!r} in store {self.url}",
                                hint="list them with `skyweave tokens list`", kind="token", id=token_id)
        return TOKEN.from_row(row)
