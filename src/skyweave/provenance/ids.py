"""Stable IVOA identifiers for what skyweave records: ``ivo://<authority>/<kind>?<local id>``.

=============  ===============================================  =====================================
kind           example                                          names
=============  ===============================================  =====================================
``run``        ``ivo://skyweave.local/run?run-01jd8x…``          a run (``RunRecord.id``)
``activity``   ``ivo://skyweave.local/activity?act-01jd8x…``     an activity (``ActivityRecord.id``)
``product``    ``ivo://skyweave.local/product?prd-01jd8x…``      a product (``ProductRecord.id``)
``task``       ``ivo://skyweave.local/task?calibrate@2.1``       a task version (``TaskSpec.key``)
``agent``      ``ivo://skyweave.local/agent?wrk-01jd…``          a worker, host, image or skyweave
``type``       ``ivo://skyweave.local/type?ep.l1.events``        a product type (ProvDM descriptions)
=============  ===============================================  =====================================

The authority is ``Settings.authority`` (default ``skyweave.local``); IVOA Identifiers 2.0 requires
it to match ``[\\w\\d][\\w\\d\\-_.!~*'()]{2,}``.  The ids are stable: the same record always gets the
same identifier, so exports of overlapping runs can be merged.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, get_args

from skyweave.errors import SkyweaveError

Kind = Literal["run", "activity", "product", "task", "agent", "type"]
KINDS: tuple[str, ...] = get_args(Kind)
DEFAULT_AUTHORITY = "skyweave.local"

_AUTHORITY = re.compile(r"[\w\d][\w\d\-_.!~*'()]{2,}")
_LOCAL = re.compile(r"[^\s?#/]+")
"""A local id: no whitespace, and nothing that would change how the URI parses."""


class InvalidIdentifierError(SkyweaveError):
    """An IVOA identifier or authority that does not have the expected form."""

    exit_code = 2


class IvoId(NamedTuple):
    authority: str
    kind: str
    local: str

    def __str__(self) -> str:
        return f"ivo://{self.authority}/{self.kind}?{self.local}"


def check_authority(authority: str) -> str:
    """``authority`` if it is a valid IVOA authority id, else ``InvalidIdentifierError``."""
    if not _AUTHORITY.fullmatch(authority):
        raise InvalidIdentifierError(
            f"{authority!r} is not a valid IVOA authority",
            hint="use at least three characters from letters, digits and -_.!~*'() "
                 "starting with a letter or digit, e.g. 'skyweave.local' or 'ep.nao.cas'; "
                 "set it with `authority` in skyweave.toml or SKYWEAVE_AUTHORITY",
        )
    return authority


def namespace(authority: str, kind: str) -> str:
    """The URI prefix of ``kind`` identifiers: ``ivo://<authority>/<kind>?`` (a PROV namespace)."""
    if kind not in KINDS:
        raise InvalidIdentifierError(f"unknown identifier kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    return f"ivo://{check_authority(authority)}/{kind}?"


def ivo_id(authority: str, kind: str, local: str) -> str:
    """``ivo://<authority>/<kind>?<local>``."""
    if not _LOCAL.fullmatch(local):
        raise InvalidIdentifierError(f"{local!r} cannot be the local part of an IVOA identifier",
                                     hint="it must be non-empty, without spaces, '/', '?' or '#'")
    return namespace(authority, kind) + local


def run_id(run: str, authority: str = DEFAULT_AUTHORITY) -> str:
    return ivo_id(authority, "run", run)


def activity_id(activity: str, authority: str = DEFAULT_AUTHORITY) -> str:
    return ivo_id(authority, "activity", activity)


def product_id(product: str, authority: str = DEFAULT_AUTHORITY) -> str:
    return ivo_id(authority, "product", product)


def task_id(name: str, version: str, authority: str = DEFAULT_AUTHORITY) -> str:
    return ivo_id(authority, "task", f"{name}@{version}")


_IVO = re.compile(r"ivo://(?P<authority>[^/?#]+)/(?P<kind>[^/?#]+)\?(?P<local>.+)", re.IGNORECASE)


def parse(identifier: str) -> IvoId:
    """Split an identifier made here back into ``(authority, kind, local)``; errors say why not."""
    match = _IVO.fullmatch(identifier.strip())
    if match is None:
        raise InvalidIdentifierError(
            f"{identifier!r} is not a skyweave IVOA identifier",
            hint="expected ivo://<authority>/<kind>?<id>, e.g. ivo://skyweave.local/activity?act-01…",
        )
    kind = match["kind"].lower()
    if kind not in KINDS:
        raise InvalidIdentifierError(f"{identifier!r} names an unknown kind {kind!r}",
                                     hint=f"skyweave identifiers are of kind {', '.join(KINDS)}")
    local = match["local"]
    if not _LOCAL.fullmatch(local):
        raise InvalidIdentifierError(f"{identifier!r} has an invalid local part {local!r}")
    # IVOA: the authority part is case-insensitive; keep it as written, compare lower-cased
    return IvoId(check_authority(match["authority"]), kind, local)


def parse_task(identifier: str) -> tuple[str, str]:
    """``(name, version)`` of a ``task`` identifier."""
    ivo = parse(identifier)
    name, sep, version = ivo.local.rpartition("@")
    if ivo.kind != "task" or not sep or not name or not version:
        raise InvalidIdentifierError(f"{identifier!r} is not a task identifier",
                                     hint="expected ivo://<authority>/task?<name>@<version>")
    return name, version
