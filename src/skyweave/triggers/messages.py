"""Messages and VOEvent packets on the bus as trigger events.

Each trigger reads the bus's event log in a consumer group of its own (``trigger.NAME``), takes
the ``TriggerMessage`` posts of its topic (``skyweave triggers post TOPIC FILE``) and commits the
group's offset only after the ledger has recorded them: a trigger process killed in between reads
them again, and the ledger (key: the message id, or a VOEvent's IVORN) starts nothing twice.

A VOEvent packet is parsed and validated with voevent-parse: it must be XML, a VOEvent of version
2.0 and valid against the 2.0 schema, or it is recorded as *rejected* with the reason - never
silently accepted.  A valid packet of another stream or role than the trigger's is *ignored*
(recorded too).  Fields: ivorn, stream, role, author, time, ra, dec, error, and every What param.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from skyweave.bus.base import Bus
from skyweave.errors import MessageError
from skyweave.model import messages as m
from skyweave.model.triggers import FiringState, TriggerEvent, TriggerKind, TriggerRecord, TriggerSpec
from skyweave.triggers.sources import Poll, Source

log = logging.getLogger(__name__)

BATCH = 500


def group_of(trigger: str) -> str:
    """The bus consumer group a trigger reads in."""
    return f"trigger.{trigger}"


def _rejected(key: str, reason: str, at: float) -> TriggerEvent:
    return TriggerEvent(key=key, at=at, state=FiringState.REJECTED, reason=reason)


def _digest(payload: str) -> str:
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()[:32]


def parse_voevent(payload: str | bytes, *, at: float = 0.0) -> TriggerEvent:
    """The trigger event of one VOEvent packet: key its IVORN, fields its position, time and
    parameters; a packet that is not a valid VOEvent 2.0 gives a *rejected* event saying why
    (its key: a digest of the bytes)."""
    import voeventparse as vp
    from lxml import etree

    data = payload.encode() if isinstance(payload, str) else payload
    digest = _digest(data.decode(errors="replace"))
    try:
        packet = vp.loads(data, check_version=False)
    except etree.XMLSyntaxError as exc:
        return _rejected(digest, f"not an XML document: {exc}", at)
    except Exception as exc:  # voevent-parse raises bare exceptions for non-VOEvent XML
        return _rejected(digest, f"not a VOEvent packet: {exc}", at)
    tag = etree.QName(packet).localname if isinstance(packet.tag, str) else ""
    if tag != "VOEvent":
        return _rejected(digest, f"the document's root is <{tag}>, not <VOEvent>", at)
    version = packet.attrib.get("version")
    if version != "2.0":
        return _rejected(digest, f"VOEvent version {version!r}: only version 2.0 is accepted", at)
    if not vp.valid_as_v2_0(packet):
        schema = vp.voevent_v2_0_schema
        schema.validate(packet)
        first = schema.error_log.last_error
        return _rejected(
            digest,
            f"not valid against the VOEvent 2.0 schema: {first.message if first else '?'} "
            f"(line {first.line if first else '?'})",
            at,
        )
    ivorn = str(packet.attrib["ivorn"])
    fields: dict[str, Any] = {
        "ivorn": ivorn,
        "stream": ivorn.split("#", 1)[0],
        "role": packet.attrib.get("role"),
        "author": _author(packet),
    }
    try:
        fields["time"] = vp.get_event_time_as_utc(packet).isoformat()
    except Exception:  # no WhereWhen/ObsDataLocation time
        fields["time"] = None
    try:
        pos = vp.get_event_position(packet)
        fields.update(
            ra=float(pos.ra),
            dec=float(pos.dec),
            error=float(pos.err),
            position_units=str(pos.units),
            position_system=str(pos.system),
        )
    except Exception:  # no position in the packet
        fields.update(ra=None, dec=None, error=None)
    for name, attrs in _params(packet).items():
        if isinstance(name, str) and name:  # an unnamed Param cannot fill a parameter
            fields.setdefault(name, _value(attrs))
    return TriggerEvent(key=ivorn, fields=fields, at=at)


def _author(packet: Any) -> str | None:
    ivorn = packet.find("Who/AuthorIVORN")
    return None if ivorn is None else str(ivorn.text)


def _params(packet: Any) -> dict[str, dict[str, Any]]:
    import voeventparse as vp

    found: dict[str, dict[str, Any]] = dict(vp.get_toplevel_params(packet))
    for group in vp.get_grouped_params(packet).values():
        for name, attrs in group.items():
            found.setdefault(name, attrs)
    return found


def _value(attrs: dict[str, Any]) -> Any:
    text = str(attrs.get("value"))
    kind = attrs.get("dataType", "string")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except (TypeError, ValueError):
        return text
    return text


def select_voevent(spec: TriggerSpec, event: TriggerEvent) -> TriggerEvent:
    """``event`` as this trigger sees it: *ignored* (with the reason) when its stream or role is
    not the trigger's."""
    if event.state is not None:
        return event
    streams: Sequence[str] = spec.source.get("streams", [])
    roles: Sequence[str] = spec.source.get("roles", ["observation"])
    if streams and not any(str(event.fields["ivorn"]).startswith(s) for s in streams):
        return TriggerEvent(
            key=event.key,
            fields=event.fields,
            at=event.at,
            state=FiringState.IGNORED,
            reason=f"stream {event.fields['stream']} is not one of {', '.join(streams)}",
        )
    if event.fields.get("role") not in roles:
        return TriggerEvent(
            key=event.key,
            fields=event.fields,
            at=event.at,
            state=FiringState.IGNORED,
            reason=f"role {event.fields.get('role')!r} is not one of {', '.join(roles)}",
        )
    return event


def parse_message(payload: str, key: str, at: float) -> TriggerEvent:
    """A plain message: a JSON object whose members are the fields."""
    try:
        fields = json.loads(payload)
    except json.JSONDecodeError as exc:
        return _rejected(key, f"not JSON: {exc}", at)
    if not isinstance(fields, dict):
        return _rejected(key, f"a JSON {type(fields).__name__}, not an object of fields", at)
    return TriggerEvent(key=key, fields=fields, at=at)


class MessageSource(Source):
    """The trigger's topic on the bus, read in the trigger's own consumer group."""

    def __init__(self, spec: TriggerSpec, bus: Bus, wake: threading.Event | None = None) -> None:
        super().__init__(spec, wake)
        self.bus = bus
        self.group = group_of(spec.name)
        self.topic = str(spec.source.get("topic", "voevent"))

    def poll(self, record: TriggerRecord, now: float) -> Poll:  # noqa: ARG002
        delivered = self.bus.read(self.group, BATCH)
        out = Poll(
            offset=delivered[-1].offset if delivered else None, retry_at=None if delivered else now + 1.0
        )
        if delivered:
            out.retry_at = now  # more may be waiting
        for item in delivered:
            try:
                envelope = m.decode_message(item.data)
            except MessageError:
                continue  # the controller dead-letters malformed messages; not a trigger's business
            body = envelope.body
            if not isinstance(body, m.TriggerMessage) or body.topic != self.topic:
                continue
            if self.spec.kind is TriggerKind.VOEVENTS:
                event = select_voevent(self.spec, parse_voevent(body.payload, at=body.at))
            else:
                event = parse_message(body.payload, envelope.id, body.at)
            out.events.append(event)
        return out

    def done(self, poll: Poll, recorded: Sequence[str]) -> None:  # noqa: ARG002
        if poll.offset is not None:
            self.bus.commit(self.group, poll.offset)


def post_message(bus: Bus, topic: str, payload: str, *, message_id: str, at: float) -> None:
    """Publish ``payload`` for the triggers of ``topic``."""
    bus.publish([m.encode_message(message_id, m.TriggerMessage(topic=topic, payload=payload, at=at))])
