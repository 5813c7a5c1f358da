"""What an activity left to read: its command line, each attempt's captured output (from this
host's log directory or the product storage), its error and its detours — for ``skyweave logs``
and the server's ``/activities/{id}/logs``."""

from __future__ import annotations

from pathlib import Path

from skyweave.errors import SkyweaveError
from skyweave.model.records import ActivityRecord
from skyweave.storage import locate
from skyweave.store.base import Store

LogPart = tuple[str | None, str]
"""``(rule, text)``: a heading (or ``None``) and the text under it, as it is."""


def stored_log(uri: str) -> str:
    """A log a worker wrote to the product storage (a worker without this host's disk)."""
    if not uri:
        return ""
    try:
        storage, key = locate(uri)
        with storage.open(key) as reader:
            return reader.read().decode(errors="replace")
    except (OSError, SkyweaveError) as exc:
        return f"(the log at {uri} cannot be read here: {getattr(exc, 'message', exc)})\n"


def log_parts(store: Store, store_dir: Path, act: ActivityRecord) -> list[LogPart]:
    """Everything ``act`` left, in order; empty when it left nothing."""
    parts: list[LogPart] = []
    if act.command is not None:
        code = "" if act.exit_code is None else f" (exit code {act.exit_code})"
        parts.append((None, f"command: {act.command}{code}\n"))
    if act.image_digest is not None:
        parts.append((None, f"image: {act.image_digest}\n"))
    for att in store.list_attempts(act.id) or []:
        path = store_dir / "logs" / f"{act.id}.{att.attempt}.log"
        # a lost attempt (its worker died), a cancelled one, or one reported after that, says why
        why = att.error if att.error and (att.state in ("lost", "cancelled") or
                                          att.error.get("type") == "skyweave.Superseded") else None
        stored = act.log_uri if att.attempt == act.attempt and act.log_uri else ""
        if path.is_file() or why or stored.partition("://")[0] not in ("", "file"):
            text = path.read_text(errors="replace") if path.is_file() else stored_log(stored)
            if why:
                text += f"{why.get('type')}: {why.get('message')}\n"
            parts.append((f"attempt {att.attempt} ({att.state})", text))
    if act.error:
        traceback = act.error.get("traceback")
        parts.append(("error", f"{act.error.get('type')}: {act.error.get('message')}\n"
                               + (f"{traceback}\n" if traceback else "")))
    parts.extend((None, f"detour {d.kind}: {d.product_type} for {d.param!r} {d.reason}\n")
                 for d in act.detours)
    return parts
