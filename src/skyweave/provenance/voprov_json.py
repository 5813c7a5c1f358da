"""The ProvDM document as voprov (the ProvDM authors' library) writes and reads PROV-JSON.

``provdm.py`` builds plain W3C PROV that uses the ProvDM vocabulary (description classes as
entities typed ``voprov:ActivityDescription``…, links as ``voprov:isDescribedBy`` attributes),
which ``prov`` reads back.  voprov recognises ProvDM classes only under their own PROV-JSON
record keys, so ``to_voprov_json`` rewrites that JSON into voprov's dialect:

=====================================================  ===============================================
plain PROV (``provdm.to_provdm``)                      voprov PROV-JSON
=====================================================  ===============================================
``entity`` typed ``voprov:ActivityDescription``        ``activityDescription`` (likewise Usage-,
(``EntityDescription``, ``UsageDescription``, …)        Generation-, Parameter-, EntityDescription,
                                                       ``parameter`` for ``voprov:Parameter``)
``entity`` typed ``voprov:DatasetEntity``              ``datasetEntity``
``voprov:name``/``role``/``value``/``location``        ``prov:name``/``role``/``value``/``location``
attribute ``voprov:isDescribedBy`` on a record         an ``isDescribedBy`` relation (``described``,
                                                       ``descriptor``)
``voprov:activityDescription`` /                       an ``isRelatedTo`` relation (``related``: the
``voprov:entityDescription`` on a description          description, ``relator``: the one it belongs to)
``wasInfluencedBy`` typed ``voprov:wasConfiguredBy``   ``wasConfiguredBy`` (``configured``,
                                                       ``configurator``, ``artefactType``)
=====================================================  ===============================================

Everything else (activities, agents, ``used``, ``wasGeneratedBy``, associations, attributes) is
kept as it is.  The result is what voprov 0.0.4 reads (tested in a separate environment with
``prov==2.0.1``, which voprov needs); ``prov`` 3 does not read these record keys.
"""

from __future__ import annotations

import json
from typing import Any

from prov.model import ProvDocument

CLASSES = {  # ProvDM class -> voprov record key, most specific first
    "voprov:ActivityDescription": "activityDescription",
    "voprov:UsageDescription": "usageDescription",
    "voprov:GenerationDescription": "generationDescription",
    "voprov:ParameterDescription": "parameterDescription",
    "voprov:ConfigFileDescription": "configFileDescription",
    "voprov:EntityDescription": "entityDescription",
    "voprov:DatasetDescription": "datasetDescription",
    "voprov:Parameter": "parameter",
    "voprov:DatasetEntity": "datasetEntity",
}
FORMAL = {"voprov:name": "prov:name", "voprov:role": "prov:role", "voprov:value": "prov:value",
          "voprov:location": "prov:location"}
"""voprov writes these ProvDM attributes in the ``prov`` namespace."""


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _name(value: Any) -> str:
    return str(value["$"]) if isinstance(value, dict) else str(value)


Relations = dict[str, list[dict[str, Any]]]


def to_voprov_json(doc: ProvDocument) -> str:
    """PROV-JSON of a ``provdm.to_provdm`` document in voprov's dialect (see the module docstring)."""
    text = doc.serialize(format="json")
    assert text is not None
    source: dict[str, Any] = json.loads(text)
    out: dict[str, Any] = {"prefix": source.pop("prefix", {})}
    relations: Relations = {"isDescribedBy": [], "isRelatedTo": [], "wasConfiguredBy": []}
    for key, records in source.items():
        for ident, content in records.items():
            for record in _values(content):
                types = {_name(t) for t in _values(record.get("prov:type", []))}
                if key == "wasInfluencedBy" and "voprov:wasConfiguredBy" in types:
                    relations["wasConfiguredBy"].append({
                        "voprov:configured": record["prov:influencee"],
                        "voprov:configurator": record["prov:influencer"],
                        "voprov:artefactType": _name(record.get("voprov:artefactType", "Parameter"))})
                    continue
                kind = key if key != "entity" else next((k for c, k in CLASSES.items() if c in types), key)
                converted = _convert(ident, record, renamed=kind != key, relations=relations)
                out.setdefault(kind, {})[ident] = converted
    for key, found in relations.items():
        for n, record in enumerate(found, start=1):
            out.setdefault(key, {})[f"_:{key}{n}"] = record
    return json.dumps(out, indent=2)


def _convert(ident: str, record: dict[str, Any], *, renamed: bool, relations: Relations) -> dict[str, Any]:
    """The record's attributes for voprov; its links become relations."""
    kept: dict[str, Any] = {}
    for attr, value in record.items():
        targets = [_name(v) for v in _values(value)]
        if attr == "voprov:isDescribedBy":
            relations["isDescribedBy"] += [{"voprov:described": ident, "voprov:descriptor": t}
                                           for t in targets]
        elif attr == "voprov:activityDescription" and renamed:  # a part of that activity's description
            relations["isRelatedTo"] += [{"voprov:related": ident, "voprov:relator": t} for t in targets]
        elif attr == "voprov:entityDescription" and renamed:  # what a generation description makes
            relations["isRelatedTo"] += [{"voprov:related": t, "voprov:relator": ident} for t in targets]
        elif renamed and attr in FORMAL:
            kept[FORMAL[attr]] = targets[0]
        else:
            kept[attr] = value
    return kept
