"""The IVOA Provenance Data Model (ProvDM 1.0) flavour of an export, written with ``prov.model``.

ProvDM extends W3C PROV with *description* classes (what a kind of activity, entity, usage or
generation is, independently of one execution) and *configuration* classes (parameters and
configuration files).  ``voprov`` (the reference library) does not work with ``prov`` 3, so the
ProvDM classes are expressed here the way ProvDM's W3C serialization does: as PROV entities typed
``voprov:<Class>`` (namespace ``http://www.ivoa.net/documents/ProvenanceDM/index.html#``) and
linked by ``voprov:isDescribedBy`` attributes and ``wasInfluencedBy`` relations typed
``voprov:wasConfiguredBy``.  The result is plain PROV: ``ProvDocument.deserialize`` reads it back
whole, and the W3C relations (``used``, ``wasGeneratedBy``, associations) are those of ``w3c.py``.

======================================  ==========================================================
ProvDM 1.0 class / relation             skyweave record
======================================  ==========================================================
Activity (``voprov:Activity``)          an activity; ``voprov:name`` = task name,
                                        ``voprov:isDescribedBy`` -> its ActivityDescription
ActivityDescription                     one per task version, id ``swtask:<name>@<version>`` (also
                                        the association's ``prov:Plan``): ``voprov:name``,
                                        ``voprov:version``, ``voprov:description`` (docstring),
                                        ``voprov:type`` (python/command/image), ``sw:codeHash``
Entity / DatasetEntity                  a product: ``voprov:name``, ``voprov:location`` (URI),
                                        ``voprov:isDescribedBy`` -> its EntityDescription
EntityDescription (+ DatasetDescription)  one per product type, id ``swtype:<type>``
UsageDescription                        one per (task version, input role); ``voprov:role`` = the
                                        parameter name; each ``used`` points at it
GenerationDescription                   one per (task version, output product type);
                                        ``voprov:role`` = the product type; each
                                        ``wasGeneratedBy`` carries that role and points at it
Parameter                               one per activity and value (non-product) argument:
                                        ``voprov:name``, ``voprov:value``; linked by
                                        ``wasInfluencedBy(act, param)`` typed
                                        ``voprov:wasConfiguredBy``, ``voprov:artefactType="Parameter"``
ParameterDescription                    one per task-version parameter that is not a product:
                                        ``voprov:name``, ``voprov:valueType`` (declared type),
                                        ``voprov:default`` (when it has one)
ConfigFile                              an input product whose type has a ``config``/``cfg``/``conf``
                                        segment or whose attributes say ``"config": true``: also
                                        typed ``voprov:ConfigFile`` and linked by a
                                        ``wasConfiguredBy`` with ``artefactType="ConfigFile"``
                                        (it stays a ``used`` input too)
(no ProvDM class) attempt                one ``sw:Attempt`` sub-activity per execution, as in ``w3c.py``
                                        (not typed ``voprov:Activity``: the activity is the step)
Agent (with role)                       skyweave (``orchestrator``), the worker@host (``executor``),
                                        the container image (``environment``), via
                                        ``wasAssociatedWith(act, agent, plan, [prov:role])``
======================================  ==========================================================
"""

from __future__ import annotations

from typing import Any

from prov.identifier import Namespace, QualifiedName
from prov.model import PROV, ProvDocument

from skyweave.model.records import ActivityRecord, ProductRecord, UsageRecord, utc
from skyweave.model.specs import TaskSpec
from skyweave.provenance.collect import Bundle
from skyweave.provenance.ids import namespace
from skyweave.provenance.w3c import (
    ROLE_ORCHESTRATOR,
    SW,
    Agents,
    Ids,
    activity_attributes,
    add_attempts,
    add_flows,
    add_run,
    associate,
    literal,
    new_document,
    plain_parameters,
    product_attributes,
    rel,
)

VOPROV = Namespace("voprov", "http://www.ivoa.net/documents/ProvenanceDM/index.html#")
CONFIGURED_BY = VOPROV["wasConfiguredBy"]
_CONFIG_SEGMENTS = frozenset({"config", "cfg", "conf"})

Pairs = list[tuple[Any, Any]]


def is_config_file(product: ProductRecord) -> bool:
    """Whether a product is a configuration file (ProvDM ``ConfigFile``) rather than data."""
    if product.attributes.get("config") is True:
        return True
    return bool(_CONFIG_SEGMENTS & set(product.type.lower().replace("-", ".").replace("_", ".").split(".")))


def _retype(attrs: dict[Any, Any], *types: QualifiedName) -> Pairs:
    """``attrs`` as pairs, with ``prov:type`` replaced by ``types`` (several values are allowed)."""
    pairs: Pairs = [(PROV["type"], t) for t in types]
    pairs += [(k, v) for k, v in attrs.items() if k != PROV["type"]]
    return pairs


class Descriptions:
    """Description entities of one document, each added once; their ids are stable."""

    def __init__(self, doc: ProvDocument, ids: Ids, authority: str) -> None:
        self.doc, self.ids = doc, ids
        self.types = doc.add_namespace("swtype", namespace(authority, "type"))
        self._made: set[QualifiedName] = set()

    def _entity(self, ident: QualifiedName, pairs: Pairs) -> QualifiedName:
        if ident not in self._made:
            self._made.add(ident)
            self.doc.entity(ident, pairs)
        return ident

    def activity(self, name: str, version: str, spec: TaskSpec | None) -> QualifiedName:
        pairs: Pairs = [(PROV["type"], VOPROV["ActivityDescription"]), (PROV["type"], PROV["Plan"]),
                        (PROV["label"], f"{name}@{version}"),
                        (VOPROV["name"], name), (VOPROV["version"], version)]
        if spec is not None:
            pairs += [(VOPROV["type"], str(spec.kind))]
            pairs += [(k, v) for k, v in ((VOPROV["description"], spec.description),
                                          (SW["codeHash"], spec.code_hash), (SW["ref"], spec.ref),
                                          (SW["image"], spec.image),
                                          (SW["imageDigest"], spec.image_digest)) if v]
        ident = self._entity(self.ids.task(name, version), pairs)
        if spec is not None:
            for param, type_name in spec.parameters.items():
                if type_name.rstrip("?") != "Product":
                    self.parameter(name, version, param, spec)
        return ident

    def _sub(self, name: str, version: str, *parts: str) -> QualifiedName:
        return self.ids.task(name, ".".join((version, *parts)))

    def entity(self, product_type: str) -> QualifiedName:
        return self._entity(self.types[_safe(product_type)], [
            (PROV["type"], VOPROV["EntityDescription"]), (PROV["type"], VOPROV["DatasetDescription"]),
            (PROV["label"], product_type), (VOPROV["name"], product_type)])

    def usage(self, activity: ActivityRecord, role: str) -> QualifiedName:
        name, version = activity.task_name, activity.task_version
        return self._entity(self._sub(name, version, "usage", role), [
            (PROV["type"], VOPROV["UsageDescription"]), (VOPROV["role"], role),
            (VOPROV["activityDescription"], self.ids.task(name, version))])

    def generation(self, activity: ActivityRecord, product_type: str) -> QualifiedName:
        name, version = activity.task_name, activity.task_version
        return self._entity(self._sub(name, version, "generation", product_type), [
            (PROV["type"], VOPROV["GenerationDescription"]), (VOPROV["role"], product_type),
            (VOPROV["activityDescription"], self.ids.task(name, version)),
            (VOPROV["entityDescription"], self.entity(product_type))])

    def parameter(self, name: str, version: str, param: str, spec: TaskSpec | None) -> QualifiedName:
        pairs: Pairs = [(PROV["type"], VOPROV["ParameterDescription"]), (VOPROV["name"], param),
                        (VOPROV["activityDescription"], self.ids.task(name, version))]
        if spec is not None and param in spec.parameters:
            pairs.append((VOPROV["valueType"], spec.parameters[param]))
        if spec is not None and param in spec.defaults:
            default = spec.defaults[param]
            pairs.append((VOPROV["default"], "null" if default is None else literal(default)))
        return self._entity(self._sub(name, version, "param", param), pairs)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in text)


def to_provdm(bundle: Bundle) -> ProvDocument:
    """The IVOA ProvDM flavour of a bundle (a W3C PROV document using the ProvDM vocabulary)."""
    doc, ids = new_document(bundle)
    doc.add_namespace(VOPROV)
    desc = Descriptions(doc, ids, bundle.authority)
    agents = Agents(doc, ids)
    for run in bundle.runs.values():
        doc.association(add_run(doc, ids, run), agents.skyweave, identifier=rel("assoc", run.id, "skyweave"),
                        other_attributes={PROV["role"]: ROLE_ORCHESTRATOR})
    for (name, version), spec in bundle.tasks.items():
        desc.activity(name, version, spec)
    for product in bundle.products.values():
        types = [VOPROV["DatasetEntity"], SW["Product"]] + ([VOPROV["ConfigFile"]]
                                                              if is_config_file(product) else [])
        pairs = _retype(product_attributes(product), *types)
        pairs += [(VOPROV["name"], product.name or product.id), (VOPROV["location"], product.uri),
                  (VOPROV["isDescribedBy"], desc.entity(product.type))]
        doc.entity(ids.product(product.id), pairs)
    for activity in bundle.activities.values():
        _add_activity(doc, ids, desc, agents, bundle, activity=activity)
    add_flows(
        doc, ids, bundle,
        usage_attributes=lambda u: {
            VOPROV["isDescribedBy"]: desc.usage(bundle.activities[u.activity_id], u.role)},
        generation_attributes=lambda p: _generation(desc, bundle, p),
    )
    for usage in bundle.usages:
        product = bundle.products[usage.product_id]
        if is_config_file(product):
            _configured(doc, ids, usage, ids.product(product.id), "ConfigFile")
    return doc


def _generation(desc: Descriptions, bundle: Bundle, product: ProductRecord) -> dict[Any, Any]:
    assert product.activity_id is not None
    return {PROV["role"]: product.type,
            VOPROV["isDescribedBy"]: desc.generation(bundle.activities[product.activity_id], product.type)}


def _configured(doc: ProvDocument, ids: Ids, usage: UsageRecord, artefact: QualifiedName, kind: str) -> None:
    doc.influence(ids.activity(usage.activity_id), artefact,
                  identifier=rel("configured", usage.activity_id, usage.role),
                  other_attributes=[(PROV["type"], CONFIGURED_BY), (VOPROV["artefactType"], kind)])


def _add_activity(doc: ProvDocument, ids: Ids, desc: Descriptions, agents: Agents, bundle: Bundle, *,
                  activity: ActivityRecord) -> None:
    spec = bundle.task(activity)
    plan = desc.activity(activity.task_name, activity.task_version, spec)
    pairs = _retype(activity_attributes(activity, spec), VOPROV["Activity"], SW["TaskActivity"])
    pairs += [(VOPROV["name"], activity.task_name), (VOPROV["isDescribedBy"], plan)]
    act = doc.activity(ids.activity(activity.id), utc(activity.started_at), utc(activity.ended_at), pairs)
    associate(doc, ids, agents, bundle, activity=activity, act=act, plan=plan, spec=spec)
    add_attempts(doc, ids, agents, bundle, activity=activity, act=act, plan=plan)
    for param, value in plain_parameters(activity.arguments).items():
        ident = ids.activity(f"{activity.id}.param.{_safe(param)}")
        doc.entity(ident, [(PROV["type"], VOPROV["Parameter"]), (VOPROV["name"], param),
                           (VOPROV["value"], "null" if value is None else literal(value)),
                           (VOPROV["isDescribedBy"], desc.parameter(activity.task_name, activity.task_version,
                                                                  param, spec))])
        doc.influence(act, ident, identifier=rel("configured", activity.id, param),
                      other_attributes=[(PROV["type"], CONFIGURED_BY), (VOPROV["artefactType"], "Parameter")])


def serialize(doc: ProvDocument, fmt: str = "json") -> str:
    """PROV-JSON (``json``) or PROV-N (``provn``) text of a ProvDM document."""
    text = doc.serialize(format="json", indent=2) if fmt == "json" else doc.serialize(format="provn")
    assert text is not None
    return text
