"""Messages on the bus: one versioned envelope, dispatches (commands to workers) and events.

Events are past tense (``ActivityFinished``), commands imperative (``DispatchActivity``).  Every
message is a tagged msgspec struct; ``decode_message`` validates bytes from the wire and raises
``MessageError`` (never a bare exception) for anything malformed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from skyweave.errors import MessageError
from skyweave.model.records import ProductRecord
from skyweave.model.specs import TaskSpec

ENVELOPE_VERSION = 1


class ProductRef(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker needs to know of an input product: where it is and what it should hash to."""

    id: str
    uri: str
    type: str = "file"
    checksum: str | None = None
    size: int | None = None
    obs_id: str | None = None
    detector: str | None = None
    version: str | None = None
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


def product_ref(p: ProductRecord) -> ProductRef:
    """What a worker needs to know of a stored product."""
    return ProductRef(id=p.id, uri=p.uri, type=p.type, checksum=p.checksum, size=p.size, obs_id=p.obs_id,
                      detector=p.detector, version=p.version, attributes=dict(p.attributes))


class NewProduct(msgspec.Struct, frozen=True, kw_only=True):
    """A product made by an activity (or added from outside), as reported to the controller."""

    id: str
    uri: str
    name: str = ""
    type: str = "file"
    checksum: str | None = None
    size: int | None = None
    obs_id: str | None = None
    detector: str | None = None
    version: str | None = None
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class InputNeed(msgspec.Struct, frozen=True, kw_only=True):
    """What an activity reported missing: the parameter to bind and the product it wants."""

    param: str
    product_type: str
    match: dict[str, Any] = msgspec.field(default_factory=dict)
    reason: str = ""
    provider_params: dict[str, Any] = msgspec.field(default_factory=dict)
    insufficient: bool = False


UsageValue = bool | int | float | str
"""What a usage figure may be: a number, text or true/false."""


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt's resource usage: skyweave's own figures and those aspects add (``custom``)."""

    wall_s: float = 0.0
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    max_rss_kb: int = 0
    custom: dict[str, UsageValue] = msgspec.field(default_factory=dict)
    """Figures an aspect wrote to ``outcome.usage`` under keys of its own (``files_written``)."""

    def as_dict(self) -> dict[str, UsageValue]:
        """One flat dict, as the activity record keeps it: the custom figures beside ours."""
        return {"wall_s": self.wall_s, "cpu_user_s": self.cpu_user_s, "cpu_system_s": self.cpu_system_s,
                "max_rss_kb": self.max_rss_kb, **self.custom}


# ---------------------------------------------------------------------------------------------
# dispatch: controller -> workers


class DispatchActivity(msgspec.Struct, frozen=True, kw_only=True, tag="dispatch"):
    activity_id: str
    attempt: int
    run_id: str
    task: TaskSpec
    arguments: dict[str, Any]
    """Bound arguments; products appear as ``{"$product": id}`` and are described in ``products``."""
    products: dict[str, ProductRef] = msgspec.field(default_factory=dict)
    priority: int = 0
    obs_id: str | None = None


# ---------------------------------------------------------------------------------------------
# events: workers / clients -> controller (and listeners)


class ActivityStarted(msgspec.Struct, frozen=True, kw_only=True, tag="activity.started"):
    activity_id: str
    attempt: int
    worker: str
    host: str = ""
    pid: int = 0
    at: float = 0.0
    image_digest: str = ""
    """The content digest of the container image the attempt runs in, when the executor knows it
    at start (``""``: not in a container, or known only at the end)."""


class ActivityFinished(msgspec.Struct, frozen=True, kw_only=True, tag="activity.finished"):
    activity_id: str
    attempt: int
    worker: str = ""
    result: Any = None
    products: list[NewProduct] = msgspec.field(default_factory=list)
    usage: Usage = Usage()
    log_uri: str = ""
    aspects: list[str] = msgspec.field(default_factory=list)
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    at: float = 0.0
    command: str = ""
    """Command and image tasks: the rendered command line that ran (``shlex.join`` of its argv)."""
    exit_code: int | None = None
    """Command and image tasks: the process's exit status (0 here)."""
    image_digest: str = ""
    """The content digest (``sha256:…``) of the container image the attempt ran in (``""``: it
    ran in no container)."""


class ActivityFailed(msgspec.Struct, frozen=True, kw_only=True, tag="activity.failed"):
    activity_id: str
    attempt: int
    worker: str = ""
    error_type: str = "Exception"
    message: str = ""
    traceback: str = ""
    retryable: bool = True
    exit_code: int | None = None
    command: str = ""
    usage: Usage = Usage()
    log_uri: str = ""
    aspects: list[str] = msgspec.field(default_factory=list)
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    at: float = 0.0
    image_digest: str = ""


class ActivityNeedsInput(msgspec.Struct, frozen=True, kw_only=True, tag="activity.needs_input"):
    activity_id: str
    attempt: int
    need: InputNeed
    worker: str = ""
    usage: Usage = Usage()
    log_uri: str = ""
    aspects: list[str] = msgspec.field(default_factory=list)
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    at: float = 0.0
    command: str = ""
    exit_code: int | None = None
    image_digest: str = ""


class ActivityReturned(msgspec.Struct, frozen=True, kw_only=True, tag="activity.returned"):
    """A worker hands a dispatch back unrun: the bus delivered it again after an earlier holder's
    lease ran out, so that holder may have run it; the controller decides a new attempt."""

    activity_id: str
    attempt: int
    worker: str = ""
    reason: str = ""
    at: float = 0.0


class ProductRegistered(msgspec.Struct, frozen=True, kw_only=True, tag="product.registered"):
    """A product added from outside a run (``skyweave products add``, a trigger)."""

    product: NewProduct
    at: float = 0.0


class ProductCreated(msgspec.Struct, frozen=True, kw_only=True, tag="product.created"):
    """Published by the controller once a product is registered (for listeners; never consumed by it)."""

    product: NewProduct
    run_id: str | None = None
    activity_id: str | None = None
    at: float = 0.0


class WorkerHeartbeat(msgspec.Struct, frozen=True, kw_only=True, tag="worker.heartbeat"):
    worker: str
    slots: int
    running: int = 0
    host: str = ""
    at: float = 0.0
    site: str = ""
    """The site it claims work for (the controller moves work away from a site with no live worker)."""


class RunSubmitted(msgspec.Struct, frozen=True, kw_only=True, tag="run.submitted"):
    run_id: str
    at: float = 0.0


class RunControlRequested(msgspec.Struct, frozen=True, kw_only=True, tag="run.control"):
    run_id: str
    action: str
    """``pause``, ``resume`` or ``cancel``."""
    at: float = 0.0


class PriorityChangeRequested(msgspec.Struct, frozen=True, kw_only=True, tag="priority.change"):
    priority: int
    run_id: str | None = None
    activity_id: str | None = None
    at: float = 0.0


class RetryRequested(msgspec.Struct, frozen=True, kw_only=True, tag="activity.retry"):
    activity_id: str
    at: float = 0.0


class TaskVersionRegistered(msgspec.Struct, frozen=True, kw_only=True, tag="task.registered"):
    task: TaskSpec
    at: float = 0.0


class TriggerMessage(msgspec.Struct, frozen=True, kw_only=True, tag="trigger.message"):
    """A message for the triggers listening on ``topic`` (``skyweave triggers post``): a JSON
    object, or a VOEvent packet as XML text.  The envelope id is the event's key."""

    topic: str
    payload: str
    at: float = 0.0


class RunStateChanged(msgspec.Struct, frozen=True, kw_only=True, tag="run.state"):
    """Published by the controller for listeners and watchers (never consumed by it)."""

    run_id: str
    state: str
    at: float = 0.0


class ActivityStateChanged(msgspec.Struct, frozen=True, kw_only=True, tag="activity.state"):
    """Published by the controller for listeners and watchers (never consumed by it)."""

    activity_id: str
    run_id: str
    task: str
    state: str
    at: float = 0.0


Event = (
    ActivityStarted
    | ActivityFinished
    | ActivityFailed
    | ActivityNeedsInput
    | ActivityReturned
    | ProductRegistered
    | ProductCreated
    | WorkerHeartbeat
    | RunSubmitted
    | RunControlRequested
    | PriorityChangeRequested
    | RetryRequested
    | TaskVersionRegistered
    | TriggerMessage
    | RunStateChanged
    | ActivityStateChanged
)
Message = Event | DispatchActivity
Ended = ActivityFinished | ActivityFailed | ActivityNeedsInput | ActivityReturned
"""The reports that end a dispatch: the controller acks the dispatch once it has committed one."""


def dispatch_id(activity_id: str, attempt: int) -> str:
    """The bus message id of an activity's attempt."""
    return f"{activity_id}:{attempt}"

ANNOUNCEMENTS = (RunStateChanged, ActivityStateChanged, ProductCreated)
"""What the controller publishes about facts it has recorded: all that listeners hear (one event
per fact; the workers' reports on the same log are the controller's input, not facts yet)."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What travels on the wire: a version, a unique id (for deduplication) and the message."""

    v: int
    id: str
    body: Message


def topic_of(message: Message) -> str:
    """The topic listeners subscribe to, e.g. ``activity.failed`` or ``run.state.succeeded``."""
    tag = type(message).__struct_config__.tag
    assert isinstance(tag, str)
    if isinstance(message, RunStateChanged):
        return f"run.{message.state}"
    if isinstance(message, ActivityStateChanged):
        return f"activity.{message.state}"
    return tag


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def encode_message(message_id: str, message: Message) -> bytes:
    return _encoder.encode(Envelope(v=ENVELOPE_VERSION, id=message_id, body=message))


def decode_message(data: bytes | str) -> Envelope:
    """Validate and decode one envelope; malformed input raises ``MessageError``."""
    try:
        envelope = _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MessageError(
            f"malformed bus message: {exc}",
            hint="the message was set aside in the dead-letter table; nothing was applied",
        ) from exc
    if envelope.v != ENVELOPE_VERSION:
        raise MessageError(
            f"bus message has envelope version {envelope.v}, this skyweave speaks {ENVELOPE_VERSION}",
            hint="upgrade the older side so both speak the same version",
        )
    return envelope
