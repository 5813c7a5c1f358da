"""A ``Bundle`` as a W3C PROV document (``prov.model.ProvDocument``): PROV-JSON, PROV-N, PROV-XML.

Mapping (prefixes: ``sw`` skyweave terms, ``swparam`` parameters, and one namespace per kind of
IVOA identifier, ``swrun``/``swact``/``swprd``/``swtask``/``swagent`` = ``ivo://<authority>/<kind>?``,
so that every record's full URI is its IVOA identifier, see ``ids.py``):

===================================  =================================================================
skyweave                             PROV
===================================  =================================================================
product                              ``entity(swprd:<id>)``, ``prov:type=sw:Product``; type, obs_id,
                                     detector, version, checksum, size, uri, state, created, name
                                     (``prov:label``), free attributes (``sw:attributes``, JSON)
activity                             ``activity(swact:<id>, start, end)``, ``prov:type=sw:TaskActivity``;
                                     task, version, code hash, state, exit code, host, worker,
                                     attempts, node/key, log, usage, aspects, detours, error, and
                                     each non-product parameter as ``swparam:<name>``
attempt (one per execution: lost,    ``activity(swact:<activity id>.attempt.<n>, start, end)``,
cancelled, failed ones included)     ``prov:type=sw:Attempt``; ``sw:attempt`` (n), ``sw:attemptOf``
                                     (the activity), state, host, worker, pid, exit code, and for one
                                     that did not succeed ``sw:reason``/``sw:errorType``/``sw:retryable``;
                                     ``wasStartedBy(attempt, -, act)`` and ``wasAssociatedWith(attempt,
                                     worker, plan=task, [prov:role="executor"])``.  The activity keeps
                                     the facts of its last attempt; its used/generated stay on it
run                                  ``activity(swrun:<id>)``, ``prov:type=sw:Run``; workflow, state,
                                     parameters; starts its activities: ``wasStartedBy(act, -, run)``
parent activity (backtrack provider) ``wasStartedBy(provider, -, parent)`` instead of the run
task version                         ``entity(swtask:<name>@<version>)``, ``prov:type=prov:Plan``
usage (role = parameter name)        ``used(act, prd, started, [prov:role=<param>])``
generation                           ``wasGeneratedBy(prd, act, created)``
data flow between activities         ``wasInformedBy(consumer, producer)`` (once per pair)
input brought from another site      a ``sw:Transfer`` activity per move: ``provenance/transfers.py``
worker / host                        ``agent(swagent:<worker>@<host>)`` SoftwareAgent,
                                     ``wasAssociatedWith(act, worker, plan=task, [prov:role="executor"])``
                                     and ``actedOnBehalfOf(worker, swagent:skyweave)``
skyweave itself                      ``agent(swagent:skyweave)`` SoftwareAgent, associated with every
                                     activity and run as ``prov:role="orchestrator"``
container image                      ``agent(swagent:image-<digest>)`` with ``sw:image`` (the tag) and
                                     ``sw:imageDigest``, ``prov:role="environment"``, associated with
                                     the activity and each attempt that ran in it; the activity and
                                     attempt carry ``sw:imageDigest`` (the content that ran, as the
                                     engine resolved it; else the version's pinned one)
reused product                       simply ``used`` of the original entity (its generation stays
                                     with the activity, possibly of another run, that made it)
===================================  =================================================================

Times are aware UTC datetimes.  Values PROV has no literal for (lists, dicts) are JSON text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from importlib import metadata
from typing import Any

from prov.identifier import Namespace, QualifiedName
from prov.model import PROV, ProvActivity, ProvAgent, ProvDocument

from skyweave.model.records import ActivityRecord, AttemptRecord, ProductRecord, RunRecord, utc
from skyweave.model.specs import TaskSpec
from skyweave.provenance.collect import Bundle
from skyweave.provenance.ids import namespace
from skyweave.provenance.transfers import add_transfers

SW = Namespace("sw", "https://skyweave.org/ns/prov#")
SWPARAM = Namespace("swparam", "https://skyweave.org/ns/param#")
PREFIXES = {"run": "swrun", "activity": "swact", "product": "swprd", "task": "swtask", "agent": "swagent"}
FORMATS = {"json": "json", "provn": "provn", "xml": "xml"}

ROLE_EXECUTOR = "executor"
ROLE_ORCHESTRATOR = "orchestrator"
ROLE_ENVIRONMENT = "environment"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-@]")


def skyweave_version() -> str:
    try:
        return metadata.version("skyweave")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def literal(value: Any) -> Any:
    """A value PROV can carry as is (str, bool, int, float), else its JSON text."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _add(attrs: dict[Any, Any], key: Any, value: Any) -> None:
    if value is not None and value != "":
        attrs[key] = literal(value) if not isinstance(value, QualifiedName) else value


def is_product_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "$product" in value


def _has_product(value: Any) -> bool:
    if is_product_marker(value):
        return True
    if isinstance(value, dict):
        return any(_has_product(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_product(v) for v in value)
    return False


def plain_parameters(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments that are values, not products (those are ``used`` relations)."""
    return {name: value for name, value in arguments.items() if not _has_product(value)}


class Ids:
    """PROV qualified names (whose URIs are the IVOA identifiers) for one document."""

    def __init__(self, doc: ProvDocument, authority: str) -> None:
        self.ns = {kind: doc.add_namespace(prefix, namespace(authority, kind))
                   for kind, prefix in PREFIXES.items()}

    def run(self, run_id: str) -> QualifiedName:
        return self.ns["run"][run_id]

    def activity(self, activity_id: str) -> QualifiedName:
        return self.ns["activity"][activity_id]

    def product(self, product_id: str) -> QualifiedName:
        return self.ns["product"][product_id]

    def task(self, name: str, version: str) -> QualifiedName:
        return self.ns["task"][_UNSAFE.sub("_", f"{name}@{version}")]

    def agent(self, local: str) -> QualifiedName:
        return self.ns["agent"][_UNSAFE.sub("_", local)]


def rel(kind: str, *parts: str) -> QualifiedName:
    """A stable identifier for a relation (``sw:used.<activity>.<role>.<product>``): without one,
    serializers number blank nodes in whatever order they meet them, and a re-serialized document
    would not be identical to the original."""
    return SW[_UNSAFE.sub("_", ".".join((kind, *parts)))]


def new_document(bundle: Bundle) -> tuple[ProvDocument, Ids]:
    doc = ProvDocument()
    doc.add_namespace(SW)
    doc.add_namespace(SWPARAM)
    return doc, Ids(doc, bundle.authority)


def product_attributes(product: ProductRecord) -> dict[Any, Any]:
    attrs: dict[Any, Any] = {PROV["type"]: SW["Product"]}
    _add(attrs, PROV["label"], product.name)
    _add(attrs, SW["productType"], product.type)
    _add(attrs, SW["obsId"], product.obs_id)
    _add(attrs, SW["detector"], product.detector)
    _add(attrs, SW["version"], product.version)
    _add(attrs, SW["checksum"], product.checksum)
    _add(attrs, SW["size"], product.size)
    _add(attrs, SW["uri"], product.uri)
    _add(attrs, SW["state"], product.state)
    _add(attrs, SW["run"], product.run_id)
    created = utc(product.created_at) if product.created_at else None
    if created is not None:
        attrs[SW["created"]] = created
    if product.attributes:
        attrs[SW["attributes"]] = literal(product.attributes)
    return attrs


def parameter_attributes(arguments: dict[str, Any]) -> dict[Any, Any]:
    attrs: dict[Any, Any] = {}
    for name, value in plain_parameters(arguments).items():
        key = SWPARAM[name] if _NAME.fullmatch(name) else SWPARAM[_UNSAFE.sub("_", name)]
        attrs[key] = literal(value) if value is not None else "null"
    return attrs


def activity_attributes(activity: ActivityRecord, spec: TaskSpec | None) -> dict[Any, Any]:
    attrs: dict[Any, Any] = {PROV["type"]: SW["TaskActivity"],
                             PROV["label"]: f"{activity.task_name}@{activity.task_version}"
                                            + (f"[{activity.key}]" if activity.key else "")}
    _add(attrs, SW["task"], activity.task_name)
    _add(attrs, SW["taskVersion"], activity.task_version)
    _add(attrs, SW["codeHash"], activity.code_hash or (spec.code_hash if spec else None))
    _add(attrs, SW["image"], spec.image if spec else None)
    _add(attrs, SW["imageDigest"], activity.image_digest or (spec.image_digest if spec else None))
    _add(attrs, SW["state"], activity.state)
    _add(attrs, SW["exitCode"], activity.exit_code)
    _add(attrs, SW["commandLine"], activity.command)
    _add(attrs, SW["host"], activity.host)
    _add(attrs, SW["worker"], activity.worker)
    _add(attrs, SW["attempts"], activity.attempt)
    _add(attrs, SW["node"], activity.node)
    _add(attrs, SW["key"], activity.key)
    _add(attrs, SW["logUri"], activity.log_uri)
    _add(attrs, SW["cacheKey"], activity.cache_key)
    if activity.usage:
        attrs[SW["usage"]] = literal(activity.usage)
    if activity.aspects:
        attrs[SW["aspects"]] = ",".join(activity.aspects)
    if activity.detours:
        attrs[SW["detours"]] = literal([{k: v for k, v in (("kind", d.kind), ("productType", d.product_type),
                                                            ("param", d.param), ("reason", d.reason),
                                                            ("provider", d.provider_activity),
                                                            ("product", d.product_id)) if v}
                                        for d in activity.detours])
    if activity.error:
        attrs[SW["error"]] = literal(activity.error.get("message") or activity.error)
        _add(attrs, SW["errorType"], activity.error.get("error_type"))
    attrs.update(parameter_attributes(activity.arguments))
    return attrs


def attempt_attributes(activity: ActivityRecord, attempt: AttemptRecord, of: QualifiedName) -> dict[Any, Any]:
    attrs: dict[Any, Any] = {PROV["type"]: SW["Attempt"], SW["attemptOf"]: of,
                             PROV["label"]: f"{activity.task_name}@{activity.task_version}"
                                            + (f"[{activity.key}]" if activity.key else "")
                                            + f" attempt {attempt.attempt}"}
    _add(attrs, SW["attempt"], attempt.attempt)
    _add(attrs, SW["state"], attempt.state)
    _add(attrs, SW["host"], attempt.host)
    _add(attrs, SW["worker"], attempt.worker)
    _add(attrs, SW["pid"], attempt.pid)
    _add(attrs, SW["exitCode"], attempt.exit_code)
    _add(attrs, SW["imageDigest"], attempt.image_digest)
    if attempt.error:
        _add(attrs, SW["reason"], attempt.error.get("message"))
        _add(attrs, SW["errorType"], attempt.error.get("type") or attempt.error.get("error_type"))
        _add(attrs, SW["retryable"], attempt.error.get("retryable"))
    return attrs


def add_attempts(doc: ProvDocument, ids: Ids, agents: Agents, bundle: Bundle, *, activity: ActivityRecord,
                 act: ProvActivity, plan: QualifiedName) -> None:
    """One sub-activity per execution of ``activity``, started by it and associated with its worker."""
    of = ids.activity(activity.id)
    spec = bundle.task(activity)
    for attempt in bundle.attempts.get(activity.id, []):
        n = str(attempt.attempt)
        sub = doc.activity(ids.activity(f"{activity.id}.attempt.{n}"), utc(attempt.started_at),
                           utc(attempt.ended_at), attempt_attributes(activity, attempt, of))
        doc.start(sub, starter=act, time=utc(attempt.started_at), identifier=rel("start", activity.id, n))
        worker = agents.worker(attempt.worker, attempt.host)
        if worker is not None:
            doc.association(sub, worker, plan, identifier=rel("assoc", activity.id, n, "worker"),
                            other_attributes={PROV["role"]: ROLE_EXECUTOR})
        image = agents.image(spec.image if spec else None, attempt.image_digest or "")
        if image is not None and attempt.image_digest:
            doc.association(sub, image, plan, identifier=rel("assoc", activity.id, n, "image"),
                            other_attributes={PROV["role"]: ROLE_ENVIRONMENT})
        add_transfers(doc, attempt, sub, name=f"{activity.id}.attempt.{n}", worker=worker,
                      activity=ids.activity, product=ids.product, rel=rel)


def task_attributes(name: str, version: str, spec: TaskSpec | None) -> dict[Any, Any]:
    attrs: dict[Any, Any] = {PROV["type"]: PROV["Plan"], PROV["label"]: f"{name}@{version}",
                             SW["task"]: name, SW["taskVersion"]: version}
    if spec is not None:
        _add(attrs, SW["codeHash"], spec.code_hash)
        _add(attrs, SW["kind"], str(spec.kind))
        _add(attrs, SW["ref"], spec.ref)
        _add(attrs, SW["image"], spec.image)
        _add(attrs, SW["imageDigest"], spec.image_digest)
        _add(attrs, SW["description"], spec.description)
    return attrs


def add_run(doc: ProvDocument, ids: Ids, run: RunRecord) -> ProvActivity:
    attrs: dict[Any, Any] = {PROV["type"]: SW["Run"], PROV["label"]: run.workflow}
    _add(attrs, SW["workflow"], run.workflow)
    _add(attrs, SW["workflowRef"], run.workflow_ref)
    _add(attrs, SW["workflowCodeHash"], run.workflow_hash)  # a registered workflow's snapshot
    _add(attrs, SW["state"], run.state)
    _add(attrs, SW["priority"], run.priority)
    _add(attrs, SW["error"], run.error)
    attrs.update(parameter_attributes(run.params))
    return doc.activity(ids.run(run.id), utc(run.started_at), utc(run.ended_at), attrs)


class Agents:
    """The agents of one document, each added once."""

    def __init__(self, doc: ProvDocument, ids: Ids) -> None:
        self.doc, self.ids = doc, ids
        self.skyweave = doc.agent(ids.agent("skyweave"), {
            PROV["type"]: PROV["SoftwareAgent"], PROV["label"]: "skyweave",
            SW["version"]: skyweave_version()})
        self._made: dict[str, ProvAgent] = {}

    def worker(self, worker: str | None, host: str | None) -> ProvAgent | None:
        if not worker and not host:
            return None
        local = f"{worker}@{host}" if worker and host else str(worker or host)
        agent = self._made.get(local)
        if agent is None:
            attrs: dict[Any, Any] = {PROV["type"]: PROV["SoftwareAgent"], PROV["label"]: local}
            _add(attrs, SW["worker"], worker)
            _add(attrs, SW["host"], host)
            agent = self._made[local] = self.doc.agent(self.ids.agent(local), attrs)
            self.doc.delegation(agent, self.skyweave, identifier=rel("delegation", local))
        return agent

    def image(self, image: str | None, digest: str = "") -> ProvAgent | None:
        """The image as an agent, identified by its content digest when known (the tag can move;
        a task without an image of its own ran in the worker's default image: its digest only)."""
        if not image and not digest:
            return None
        local = "image-" + (digest.partition(":")[2][:16] if digest
                            else hashlib.sha256(str(image).encode()).hexdigest()[:16])
        agent = self._made.get(local)
        if agent is None:
            attrs: dict[Any, Any] = {PROV["type"]: PROV["SoftwareAgent"], PROV["label"]: image or digest}
            _add(attrs, SW["image"], image)
            _add(attrs, SW["imageDigest"], digest or None)
            agent = self._made[local] = self.doc.agent(self.ids.agent(local), attrs)
        return agent


def to_prov(bundle: Bundle) -> ProvDocument:
    """The W3C PROV document of a bundle."""
    doc, ids = new_document(bundle)
    agents = Agents(doc, ids)
    for run in bundle.runs.values():
        doc.association(add_run(doc, ids, run), agents.skyweave, identifier=rel("assoc", run.id, "skyweave"),
                        other_attributes={PROV["role"]: ROLE_ORCHESTRATOR})
    for (name, version), task_spec in bundle.tasks.items():
        doc.entity(ids.task(name, version), task_attributes(name, version, task_spec))
    for product in bundle.products.values():
        doc.entity(ids.product(product.id), product_attributes(product))
    for activity in bundle.activities.values():
        spec = bundle.task(activity)
        if spec is None:  # unregistered now: describe the plan from the activity alone
            doc.entity(ids.task(activity.task_name, activity.task_version),
                       task_attributes(activity.task_name, activity.task_version, None))
        act = doc.activity(ids.activity(activity.id), utc(activity.started_at), utc(activity.ended_at),
                           activity_attributes(activity, spec))
        plan = ids.task(activity.task_name, activity.task_version)
        associate(doc, ids, agents, bundle, activity=activity, act=act, plan=plan, spec=spec)
        add_attempts(doc, ids, agents, bundle, activity=activity, act=act, plan=plan)
    add_flows(doc, ids, bundle)
    return doc


def associate(doc: ProvDocument, ids: Ids, agents: Agents, bundle: Bundle, *, activity: ActivityRecord,
              act: ProvActivity, plan: QualifiedName, spec: TaskSpec | None) -> None:
    """The activity's agents (with roles and the task as plan) and what started it."""
    doc.association(act, agents.skyweave, plan, identifier=rel("assoc", activity.id, "skyweave"),
                    other_attributes={PROV["role"]: ROLE_ORCHESTRATOR})
    worker = agents.worker(activity.worker, activity.host)
    if worker is not None:
        doc.association(act, worker, plan, identifier=rel("assoc", activity.id, "worker"),
                        other_attributes={PROV["role"]: ROLE_EXECUTOR})
    image = agents.image(spec.image if spec else None,
                         activity.image_digest or (spec.image_digest if spec else ""))
    if image is not None:
        doc.association(act, image, plan, identifier=rel("assoc", activity.id, "image"),
                        other_attributes={PROV["role"]: ROLE_ENVIRONMENT})
    starter = (ids.activity(activity.parent_activity) if activity.parent_activity in bundle.activities
               else ids.run(activity.run_id) if activity.run_id in bundle.runs else None)
    if starter is not None:
        doc.start(act, starter=starter, time=utc(activity.started_at), identifier=rel("start", activity.id))


def add_flows(doc: ProvDocument, ids: Ids, bundle: Bundle,
              usage_attributes: Any = None, generation_attributes: Any = None) -> None:
    """``used``, ``wasGeneratedBy`` and ``wasInformedBy``; the callbacks add attributes per relation."""
    for usage in bundle.usages:
        activity = bundle.activities[usage.activity_id]
        attrs: dict[Any, Any] = {PROV["role"]: usage.role}
        if usage_attributes is not None:
            attrs.update(usage_attributes(usage))
        doc.usage(ids.activity(usage.activity_id), ids.product(usage.product_id), utc(activity.started_at),
                  identifier=rel("used", usage.activity_id, usage.role, usage.product_id),
                  other_attributes=attrs)
    for product_id, activity_id in bundle.generations():
        product = bundle.products[product_id]
        gen_attrs: dict[Any, Any] = {}
        if generation_attributes is not None:
            gen_attrs.update(generation_attributes(product))
        doc.generation(ids.product(product_id), ids.activity(activity_id),
                       utc(product.created_at) if product.created_at else None,
                       identifier=rel("gen", product_id), other_attributes=gen_attrs or None)
    informed: set[tuple[str, str]] = set()
    for usage in bundle.usages:
        producer = bundle.products[usage.product_id].activity_id
        pair = (usage.activity_id, producer or "")
        if producer in bundle.activities and producer != usage.activity_id and pair not in informed:
            informed.add(pair)
            doc.communication(ids.activity(usage.activity_id), ids.activity(producer),
                              identifier=rel("informed", usage.activity_id, producer or ""))


def serialize(doc: ProvDocument, fmt: str) -> str:
    """``json`` (PROV-JSON), ``provn`` (PROV-N) or ``xml`` (PROV-XML) text."""
    text = doc.serialize(format="json", indent=2) if fmt == "json" else doc.serialize(format=FORMATS[fmt])
    assert text is not None
    return text
