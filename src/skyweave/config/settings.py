"""One typed settings object, read at the entry point and passed down (never at import time).

Sources, lowest to highest precedence: defaults, ``[tool.skyweave]`` in ``pyproject.toml``,
``skyweave.toml`` (both in the working directory), ``SKYWEAVE_*`` environment variables, then
explicit arguments (CLI flags).  Defaults need no servers.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from skyweave.errors import SkyweaveError


class RetentionRule(BaseModel):
    """One retention policy (a ``[[retention]]`` table): which products ``skyweave cleanup`` deletes.

    The first rule whose ``type`` pattern matches a product's type governs it (put specific rules
    first): once the product is older than ``older_than_days`` its file is deleted and its row
    marked ``deleted`` (provenance is kept, so it can be made again).  Fields are checked when the
    settings are loaded: a misspelt key is an error, not a silently ignored rule.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, description="fnmatch pattern on the product type, e.g. "
                                                "ep.l1.events or ep.l1.* (case-sensitive).")
    older_than_days: float = Field(ge=0, description="Only products created more than this many days "
                                                     "ago (fractions allowed: 0.5 is twelve hours).")
    keep_pinned: bool = Field(True, description="Keep pinned products and every product a pinned "
                                                "product was made from (its whole upstream lineage).")
    include_external: bool = Field(False, description="Also delete products registered from outside "
                                                      "(`products add`, no generating activity), which "
                                                      "cannot be recomputed (their copies in the store: a "
                                                      "file outside the store is never deleted).")


class PruneSettings(BaseModel):
    """How long the records that grow with every run are kept (``[prune]`` in ``skyweave.toml``,
    ``SKYWEAVE_PRUNE='{"dead_letters_days": 7}'``): applied by ``skyweave prune`` and, every
    ``every_s``, by the active controller (docs/operations.md, "Retention").  Provenance (runs,
    activities, attempts, products, usages) is never pruned; product files go by the ``[[retention]]``
    rules of ``skyweave cleanup``.  A limit of ``0`` (or ``null`` in JSON) keeps that kind for ever."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listener_idle_days: float | None = Field(
        7.0, ge=0, description="A bus consumer group (a listener's, a server's, a messages trigger's) "
                               "that has not read for this long is dropped, and the events kept only "
                               "for it go; if it comes back it reads from the oldest event still on the "
                               "bus. The controller's group is never dropped. 0: never.")
    dead_letters_days: float | None = Field(
        30.0, ge=0, description="Dead letters older than this are deleted (re-drive or inspect them "
                                "before: `skyweave dead-letters`). 0: never.")
    trigger_ledger_days: float | None = Field(
        90.0, ge=0, description="Ledger rows of schedule, messages and voevents triggers recorded longer "
                                "ago than this are deleted (their sources never replay an old event); "
                                "held rows and the ledgers of files and objects triggers (the memory of "
                                "what is still in the folder or bucket) are kept. 0: never.")
    logs_days: float | None = Field(
        90.0, ge=0, description="Activity log files in the storage (logs/) older than this are deleted "
                                "once their activity has finished and none of its products is still "
                                "available. 0: never.")
    every_s: float = Field(3600.0, ge=0, description="Seconds between the active controller's prunes "
                                                    "(the first one this long after it starts); 0: only "
                                                    "`skyweave prune` prunes.")
    batch: int = Field(10_000, ge=1, description="Ledger rows (consecutive row numbers) deleted per "
                                                 "store transaction: short transactions keep "
                                                 "PostgreSQL's queue and SQLite's writer fast.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYWEAVE_", extra="forbid")

    store: str = Field(".skyweave", description="Store directory or URL (sqlite:///…, postgresql://…; "
                                                "PostgreSQL needs skyweave[postgres]).")
    store_pool_size: int = Field(5, ge=1, description="Connections each process keeps open to a server "
                                                    "store (PostgreSQL), and as many again at peaks.")
    store_retry_s: float = Field(60.0, ge=0, description="Seconds a store operation waits for an unreachable "
                                                       "server (PostgreSQL down or restarting), retrying "
                                                       "with backoff and saying so in the log, before it "
                                                       "fails.")
    storage: str = Field("", description="Where products, logs and code snapshots live: a directory, or "
                                         "a URL (file:///…; s3://bucket/prefix with skyweave[s3], "
                                         "credentials from AWS_* variables or ~/.aws, never in the URL). "
                                         "Empty: the store's directory. Required with a PostgreSQL store.")
    bus: str = Field("", description="Bus URL; empty: in-process for `run`, <store>/bus.db for "
                                     "separate controller and worker processes.")
    max_deliveries: int | None = Field(
        None, ge=0, description="A dispatch claimed this many times without finishing goes to the dead "
                                "letters (`skyweave dead-letters`) instead of to a next worker; 0: never. "
                                "Unset: a Redis bus URL's ?max_deliveries= or 10 on Redis, never on the "
                                "SQLite and in-process buses. Give every process the same value.")
    executor: str = Field("local", description="Executor by name or URL (registry in "
                                               "skyweave.executors): local (process pool), threads, "
                                               "subprocess (a process per activity), slurm "
                                               "(slurm://?partition=…: a Slurm job per activity, "
                                               "docs/slurm.md), docker or podman (a container per "
                                               "activity; docs/containers.md).")
    container: str = Field("docker", description="Container engine that resolves the images of image "
                                                 "tasks to digests at registration: docker or podman, "
                                                 "with options as docker://?host=unix:///run/docker.sock "
                                                 "(docs/containers.md); the executor setting when that is "
                                                 "a container one.")
    workers: int = Field(0, description="Parallel activities per worker; 0 means one per CPU core.")
    site: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$",
                      description="This process's site (docs/operations.md, \"Several sites\"): a worker "
                                  "claims only the work placed at its site; the controller places work "
                                  "with no located input here. Empty: no site.")
    sites: dict[str, str] = Field(default_factory=dict,
                                  description="Site name -> the storage root (directory or URL) holding "
                                              "its products, for the controller's placement: an activity "
                                              "runs at the site holding most of its input bytes unless its "
                                              "task pins a site. Env: JSON, e.g. "
                                              "SKYWEAVE_SITES='{\"east\": \"/data/east\"}'.")
    site_grace_s: float = Field(30.0, ge=0,
                                description="Seconds a site may be without a live worker before the work "
                                            "placed there that its task does not pin goes to a site with "
                                            "live workers (its inputs brought over); pinned work waits and "
                                            "says so in `skyweave status` and the controller's log.")
    aging_s: float = Field(60.0, gt=0, description="Seconds of waiting that add 1 to a queued activity's "
                                                  "effective priority (in the controller and on the bus).")
    window: int = Field(256, description="Minimum number of activities dispatched but not finished.")
    lease_s: float = Field(60.0, gt=0, description="Seconds a claimed dispatch stays a worker's without a "
                                                    "lease renewal; only a last resort when no controller "
                                                    "watches the workers (then the bus hands it out again).")
    heartbeat_s: float = Field(1.0, gt=0, description="Seconds between worker heartbeats and lease renewals.")
    worker_timeout_s: float = Field(
        5.0, gt=0, description="Seconds without a heartbeat after which the controller takes a worker for "
                               "dead and dispatches what it held again, as new attempts. Keep it several "
                               "heartbeats long: a worker taken for dead while alive has its work run twice.")
    controller_lease_s: float = Field(
        6.0, gt=0, description="Seconds the controller's lease on the store lasts unless renewed. A "
                               "standby controller takes over this long after the active one stops "
                               "renewing (at once if the active one ran on its host and its process is "
                               "gone); an active controller paused longer than this loses the lease and "
                               "stops.")
    controller_renew_s: float = Field(
        1.0, gt=0, description="Seconds between the active controller's lease renewals, and between a "
                               "standby's attempts to take the lease; keep it well under "
                               "controller_lease_s.")
    batch: int = Field(512, description="Most events the controller handles in one transaction.")
    listeners: list[str] = Field(default_factory=list,
                                 description="Listener references (path.py:obj or module:obj).")
    listener_drain_s: float = Field(5.0, ge=0,
                                    description="At shutdown, seconds in all that listeners get to handle "
                                                "the events already on the bus; a listener still busy then "
                                                "is given nothing more, and what it missed is logged.")
    aspects: list[str] = Field(default_factory=list,
                               description="Extra aspect references (module:Class?pattern=…).")
    preload: list[str] = Field(default_factory=list,
                               description="Modules worker processes import as they start, before taking "
                                           "work (a pipeline's package: its import is then not paid by the "
                                           "first activities of every process).")
    authority: str = Field("skyweave.local", description="IVOA authority for identifiers.")
    provenance: bool = Field(True, description="Record provenance beyond the bare run: the built-in "
                                                "aspects (timing, resource usage, log capture, input "
                                                "validation) and which products each activity used. "
                                                "Off only to measure what it costs.")
    retention: list[RetentionRule] = Field(default_factory=list,
                                           description="Retention policies applied by `skyweave cleanup` "
                                                       "([[retention]] tables; first match wins).")

    prune: PruneSettings = Field(default_factory=lambda: PruneSettings.model_validate({}),
                                 description="How long bus events of idle listener groups, dead letters, "
                                             "trigger ledger rows and activity logs are kept ([prune]; "
                                             "`skyweave prune`).")

    @field_validator("sites")
    @classmethod
    def _absolute_roots(cls, sites: dict[str, str]) -> dict[str, str]:
        """A folder root given relative (``{"east": "site-east"}``) is taken from the working
        directory, as products' paths are recorded absolute."""
        return {site: root if "://" in root else str(Path(root).expanduser().resolve())
                for site, root in sites.items()}

    @model_validator(mode="after")
    def _renew_within_lease(self) -> Settings:
        if self.controller_renew_s * 2 > self.controller_lease_s:
            raise ValueError(f"controller_renew_s ({self.controller_renew_s:g}) must be at most half of "
                             f"controller_lease_s ({self.controller_lease_s:g}): raise the lease or renew "
                             "more often")
        return self

    @property
    def remote_storage(self) -> bool:
        """``storage`` is a URL of something other than a local folder (``s3://…``, ``memory://…``)."""
        return "://" in self.storage and not self.storage.lower().startswith("file://")

    @property
    def storage_location(self) -> str:
        """What ``storage.open_storage`` opens for products (``products/``), logs (``logs/``) and code
        snapshots (``code/``): the ``storage`` URL when it is remote, else the folder ``store_dir``."""
        return self.storage if self.remote_storage else str(self.store_dir)

    @property
    def store_dir(self) -> Path:
        """This host's folder for work directories, logs being captured and the default bus file;
        with a local ``storage`` (the default) also where products, logs and code snapshots live.

        It is ``storage`` when that is a folder (or ``file://`` URL), else the store's own directory
        (for a database file, ``<stem>.files/`` beside it).  A store on a server (``postgresql://``)
        has no directory: with a remote ``storage`` this host's scratch is ``./.skyweave``; without
        ``storage`` this raises a ``SkyweaveError`` saying so (products never land silently in the
        working directory).
        """
        if self.storage and not self.remote_storage:
            local = self.storage
            if local.lower().startswith("file://"):
                local = local[len("file://"):]
            return Path(local).expanduser().resolve()
        if self.store.startswith("sqlite:///"):
            db = Path(self.store.removeprefix("sqlite:///"))
            return (db.resolve().parent / f"{db.stem}.files") if db.stem else Path(".skyweave").resolve()
        if "://" in self.store:
            if self.remote_storage:
                return Path(".skyweave").resolve()
            scheme = self.store.partition("://")[0]
            raise SkyweaveError(
                f"a {scheme}:// store keeps no files: say where products, logs and code snapshots go",
                hint="set storage to a directory or bucket every host of the deployment can reach, e.g. "
                     "SKYWEAVE_STORAGE=/data/skyweave or storage = \"s3://bucket/skyweave\" in skyweave.toml")
        path = Path(self.store).expanduser()
        if path.is_file() or (not path.exists() and path.suffix.lower() in (".db", ".sqlite", ".sqlite3")):
            # a database file: its products, logs and bus live beside it, in <stem>.files/
            return path.resolve().parent / f"{path.stem}.files"
        return path.resolve()

    def bus_url(self, *, shared: bool) -> str:
        if self.bus:
            return self.bus
        return f"sqlite:///{self.store_dir / 'bus.db'}" if shared else "memory://"


def _file_values(cwd: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    pyproject = cwd / "pyproject.toml"
    for path, section in ((pyproject, ("tool", "skyweave")), (cwd / "skyweave.toml", ())):
        if not path.is_file():
            continue
        try:
            data: Any = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SkyweaveError(f"{path} is not valid TOML: {exc}", hint="fix or remove the file") from exc
        for part in section:
            data = data.get(part, {})
        values.update(data)
    return values


def load_settings(cwd: Path | None = None, **overrides: Any) -> Settings:
    values = _file_values(cwd or Path.cwd())
    env_keys = {k.removeprefix("SKYWEAVE_").lower() for k in os.environ if k.startswith("SKYWEAVE_")}
    for key in env_keys:
        values.pop(key, None)  # the environment wins over files
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except Exception as exc:
        raise SkyweaveError(f"invalid skyweave settings: {exc}",
                            hint="check skyweave.toml, [tool.skyweave] and SKYWEAVE_* variables") from exc
