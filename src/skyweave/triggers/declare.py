"""Declaring triggers: in Python (``on_files``, ``on_objects``, ``on_messages``, ``on_voevents``,
``on_schedule``) or in YAML (a ``triggers:`` mapping), both checked into one ``TriggerSpec``.

YAML, one key per trigger, with exactly one of the five kinds::

    triggers:
      telemetry:
        files: {folder: incoming, glob: "**/*.evt", pattern: '^ep(?P<obs_id>\\d+)_'}
        workflow: pipeline.py:xray
        params: {events: "{path}", obs_id: "{obs_id}"}
        concurrency: 4
        on_pause: coalesce
      nightly:
        schedule: {cron: "0 3 * * *", timezone: Asia/Shanghai}
        workflow: pipeline.py:summary

Relative folders and workflow files are taken relative to the YAML file; in Python, relative to
the current directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from skyweave.errors import DefinitionError
from skyweave.model.triggers import PausePolicy, TriggerKind, TriggerSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_SOURCE_KEYS: dict[TriggerKind, dict[str, type | tuple[type, ...]]] = {
    TriggerKind.FILES: {"folder": str, "glob": str, "pattern": str, "settle_s": (int, float)},
    TriggerKind.OBJECTS: {"url": str, "pattern": str, "storage_options": dict, "rescan_s": (int, float),
                          "overlap_s": (int, float)},
    TriggerKind.MESSAGES: {"topic": str},
    TriggerKind.VOEVENTS: {"topic": str, "streams": list, "roles": list},
    TriggerKind.SCHEDULE: {"cron": str, "timezone": str, "catchup": str},
}
_REQUIRED = {
    TriggerKind.FILES: ("folder",),
    TriggerKind.OBJECTS: ("url",),
    TriggerKind.MESSAGES: ("topic",),
    TriggerKind.VOEVENTS: (),
    TriggerKind.SCHEDULE: ("cron",),
}
_COMMON = {"workflow", "params", "priority", "concurrency", "on_pause", "labels"}


def _bad(name: str, what: str, hint: str) -> DefinitionError:
    return DefinitionError(f"trigger {name!r}: {what}", hint=hint)


def make_trigger(
    name: str,
    kind: TriggerKind | str,
    workflow: str,
    source: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    priority: int = 0,
    concurrency: int | None = None,
    on_pause: PausePolicy | str = PausePolicy.KEEP,
    labels: Mapping[str, str] | None = None,
    base: Path | None = None,
) -> TriggerSpec:
    """A checked ``TriggerSpec``; ``DefinitionError`` names what is wrong and how to fix it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"trigger name {name!r} is not usable",
            hint="use letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    try:
        kind = TriggerKind(kind)
    except ValueError:
        raise _bad(
            name, f"unknown kind {kind!r}", f"use one of {', '.join(k.value for k in TriggerKind)}"
        ) from None
    if not isinstance(workflow, str) or not workflow:
        raise _bad(name, "no workflow", "name what each event starts: workflow: pipeline.py:xray")
    src = dict(source)
    allowed = _SOURCE_KEYS[kind]
    for key, value in src.items():
        if key not in allowed:
            raise _bad(name, f"{kind.value} has no setting {key!r}", f"its settings: {', '.join(allowed)}")
        if not isinstance(value, allowed[key]):
            raise _bad(name, f"{kind.value}.{key} is {value!r}", f"give a {_type_name(allowed[key])}")
    for key in _REQUIRED[kind]:
        if not src.get(key):
            raise _bad(name, f"{kind.value} needs {key}", f"add {key}: to the {kind.value} settings")
    _check_source(name, kind, src, base)
    try:
        policy = PausePolicy(on_pause)
    except ValueError:
        raise _bad(name, f"on_pause {on_pause!r}", "use keep or coalesce") from None
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise _bad(name, f"priority {priority!r}", "give an integer (higher runs first)")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise _bad(
            name, f"concurrency {concurrency!r}", "give a positive integer, or leave it out (no limit)"
        )
    params = dict(params or {})
    if not all(isinstance(k, str) for k in params):
        raise _bad(name, "parameter names must be strings", "params: {name: value or '{field}'}")
    if base is not None and ":" in workflow:
        path, _, attr = workflow.rpartition(":")
        if path.endswith(".py") and not Path(path).is_absolute():
            workflow = f"{(base / path).resolve()}:{attr}"
    elif base is not None and workflow.endswith((".yaml", ".yml")) and not Path(workflow).is_absolute():
        workflow = str((base / workflow).resolve())
    return TriggerSpec(
        name=name,
        kind=kind,
        workflow=workflow,
        source=src,
        params=params,
        priority=priority,
        concurrency=concurrency,
        on_pause=policy,
        labels={str(k): str(v) for k, v in (labels or {}).items()},
    )


def _type_name(t: type | tuple[type, ...]) -> str:
    names = [x.__name__ for x in (t if isinstance(t, tuple) else (t,))]
    return {"str": "string", "list": "list", "dict": "mapping"}.get(names[0], " or ".join(names))


def _check_source(name: str, kind: TriggerKind, src: dict[str, Any], base: Path | None) -> None:
    if "pattern" in src:
        try:
            re.compile(src["pattern"])
        except re.error as exc:
            raise _bad(
                name,
                f"pattern {src['pattern']!r} is not a regular expression ({exc})",
                "named groups (?P<obs_id>...) become event fields",
            ) from None
    if kind is TriggerKind.FILES:
        folder = Path(src["folder"]).expanduser()
        if not folder.is_absolute():
            folder = (base or Path.cwd()) / folder
        src["folder"] = str(folder.resolve())
        src.setdefault("glob", "*")
        if src.get("settle_s", 0) < 0:
            raise _bad(name, "settle_s is negative", "give the seconds a file must stay unchanged (0: none)")
    if kind is TriggerKind.OBJECTS and src.get("rescan_s", 0) < 0:
        raise _bad(name, "rescan_s is negative",
                   "give the seconds between full listings of the prefix (0: list it whole at every poll)")
    if kind is TriggerKind.OBJECTS and src.get("overlap_s", 0) < 0:
        raise _bad(name, "overlap_s is negative",
                   "give the seconds of arrivals each poll lists again (uploads finishing out of order)")
    if kind is TriggerKind.SCHEDULE:
        _check_schedule(name, src)
    if kind is TriggerKind.VOEVENTS:
        src.setdefault("topic", "voevent")
        src.setdefault("roles", ["observation"])
        for key in ("streams", "roles"):
            if not all(isinstance(x, str) for x in src.get(key, [])):
                raise _bad(
                    name,
                    f"voevents.{key} must be a list of strings",
                    "e.g. streams: ['ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos']",
                )
    if kind is TriggerKind.OBJECTS and "://" not in src["url"]:
        raise _bad(
            name, f"url {src['url']!r} has no scheme", "give the bucket and prefix: s3://bucket/prefix"
        )


def _check_schedule(name: str, src: dict[str, Any]) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter

    if not croniter.is_valid(src["cron"]):
        raise _bad(
            name,
            f"cron {src['cron']!r} is not a cron expression",
            "five fields: minute hour day month weekday, e.g. '0 3 * * *'",
        )
    tz = src.setdefault("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(
            name, f"unknown time zone {tz!r}", "use an IANA name such as UTC or Europe/Paris"
        ) from None
    if src.setdefault("catchup", "all") not in ("all", "latest"):
        raise _bad(
            name,
            f"catchup {src['catchup']!r}",
            "all: every tick missed while no trigger process ran starts a run; latest: only the last "
            "(the others are recorded as coalesced)",
        )


# -- Python --------------------------------------------------------------------------------------------
def on_files(
    name: str,
    *,
    folder: str | Path,
    workflow: str,
    glob: str = "*",
    pattern: str | None = None,
    settle_s: float = 1.0,
    **common: Any,
) -> TriggerSpec:
    """Start ``workflow`` for each file arriving in ``folder`` whose path matches ``glob``
    (``**/`` recurses) and whose name matches ``pattern`` (named groups become fields).  A file is
    taken once unchanged for ``settle_s``.  Fields: path, name, stem, folder, size, mtime."""
    src: dict[str, Any] = {"folder": str(folder), "glob": glob, "settle_s": settle_s}
    if pattern is not None:
        src["pattern"] = pattern
    return make_trigger(name, TriggerKind.FILES, workflow, src, **common)


def on_objects(
    name: str,
    *,
    url: str,
    workflow: str,
    pattern: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    rescan_s: float | None = None,
    overlap_s: float | None = None,
    **common: Any,
) -> TriggerSpec:
    """Start ``workflow`` for each object arriving under ``url`` (``s3://bucket/prefix``).  Fields:
    url, bucket, key, name, size, etag.  Credentials come from the environment, never the store.
    A poll lists the keys after those listed ``overlap_s`` ago (default 10); a full listing every
    ``rescan_s`` (default 300; 0: every poll) finds keys that sort before them (late names, new
    versions): see ``skyweave.triggers.objects``."""
    src: dict[str, Any] = {"url": url}
    if rescan_s is not None:
        src["rescan_s"] = rescan_s
    if overlap_s is not None:
        src["overlap_s"] = overlap_s
    if pattern is not None:
        src["pattern"] = pattern
    if storage_options:
        src["storage_options"] = dict(storage_options)
    return make_trigger(name, TriggerKind.OBJECTS, workflow, src, **common)


def on_messages(name: str, *, topic: str, workflow: str, **common: Any) -> TriggerSpec:
    """Start ``workflow`` for each message posted on ``topic`` (``skyweave triggers post``); the
    message's JSON object gives the fields, its id the key."""
    return make_trigger(name, TriggerKind.MESSAGES, workflow, {"topic": topic}, **common)


def on_voevents(
    name: str,
    *,
    workflow: str,
    streams: Sequence[str] = (),
    roles: Sequence[str] = ("observation",),
    topic: str = "voevent",
    **common: Any,
) -> TriggerSpec:
    """Start ``workflow`` for each valid VOEvent 2.0 packet whose IVORN starts with one of
    ``streams`` (all when empty) and whose role is one of ``roles``.  Fields: ivorn, stream, role,
    author, time (ISO UTC), ra, dec, error (degrees), and every What parameter by name."""
    return make_trigger(
        name,
        TriggerKind.VOEVENTS,
        workflow,
        {"topic": topic, "streams": list(streams), "roles": list(roles)},
        **common,
    )


def on_schedule(
    name: str, *, cron: str, workflow: str, timezone: str = "UTC", catchup: str = "all", **common: Any
) -> TriggerSpec:
    """Start ``workflow`` at each tick of ``cron`` in ``timezone``.  Fields: tick (ISO, with its
    offset), date, timestamp.  Ticks missed while no trigger process ran: all fired, or only the
    latest (``catchup``)."""
    return make_trigger(
        name,
        TriggerKind.SCHEDULE,
        workflow,
        {"cron": cron, "timezone": timezone, "catchup": catchup},
        **common,
    )


# -- YAML and Python files -------------------------------------------------------------------------------
def parse_triggers(doc: Any, *, base: Path | None = None, origin: str = "triggers") -> list[TriggerSpec]:
    """The triggers of a parsed YAML document (``{"triggers": {name: {...}}}``)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("triggers"), dict) or not doc["triggers"]:
        raise DefinitionError(
            f"{origin}: no triggers",
            hint="write a mapping `triggers:` of name -> definition (see docs/triggers.md)",
        )
    specs = []
    for name, body in doc["triggers"].items():
        if not isinstance(body, dict):
            raise _bad(
                str(name), "its definition is not a mapping", "give files:/schedule:/..., workflow:, params:"
            )
        kinds = [k for k in body if k in {k.value for k in TriggerKind}]
        unknown = set(body) - _COMMON - set(kinds)
        if unknown:
            raise _bad(
                str(name),
                f"unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                f"a trigger has one of {', '.join(k.value for k in TriggerKind)} and "
                f"{', '.join(sorted(_COMMON))}",
            )
        if len(kinds) != 1:
            raise _bad(
                str(name),
                f"{'no kind' if not kinds else 'several kinds: ' + ', '.join(kinds)}",
                f"give exactly one of {', '.join(k.value for k in TriggerKind)}",
            )
        source = body[kinds[0]] or {}
        if not isinstance(source, dict):
            raise _bad(str(name), f"{kinds[0]} is not a mapping", f"{kinds[0]}: {{...settings...}}")
        common = {k: v for k, v in body.items() if k in _COMMON and k != "workflow"}
        specs.append(make_trigger(str(name), kinds[0], body.get("workflow", ""), source, base=base, **common))
    return specs


def load_triggers(path: str | Path) -> list[TriggerSpec]:
    """The triggers declared in a YAML file, or the ``TriggerSpec`` objects at the top level of a
    Python file."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    file = Path(path).expanduser()
    if not file.is_file():
        raise DefinitionError(
            f"no trigger file {str(file)!r}", hint="give a .yaml or .py file that declares triggers"
        )
    if file.suffix == ".py":
        from skyweave.authoring.loader import load_module

        module = load_module(file.resolve())
        found = [v for v in vars(module).values() if isinstance(v, TriggerSpec)]
        if not found:
            raise DefinitionError(
                f"{file}: declares no trigger",
                hint="assign on_files(...)/on_schedule(...) results at the top level",
            )
        return [_rebase(s, file.parent) for s in found]
    try:
        doc = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(
            f"{file}: not valid YAML ({exc})", hint="fix the syntax at the line shown"
        ) from None
    return parse_triggers(doc, base=file.parent.resolve(), origin=str(file))


def _rebase(spec: TriggerSpec, base: Path) -> TriggerSpec:
    """A spec declared in a Python file, with its relative paths taken from that file's folder."""
    return make_trigger(
        spec.name,
        spec.kind,
        spec.workflow,
        msgspec.to_builtins(spec.source),
        params=spec.params,
        priority=spec.priority,
        concurrency=spec.concurrency,
        on_pause=spec.on_pause,
        labels=spec.labels,
        base=base.resolve(),
    )
