"""Arguments in, results out: product markers become ``Product`` objects for the task, and the
``Product`` objects a task returns are registered and become markers in its result.

A returned file inside the activity's work directory was made by the activity: it is moved into
storage.  A file anywhere else (raw data, a file the task was pointed at) is *registered in
place*: its URI is where it is, it is checksummed by reading it, and it is never moved, copied,
modified (no output hooks run on it) or deleted by ``skyweave cleanup`` — skyweave does not move
what the activity did not create.  An edit to it later shows as a changed checksum: reuse of the
activity's outputs then fails the integrity check and the activity runs again.

A marker is ``{"$product": "<product id>"}``, wherever it sits in lists and dicts.  A result
must be JSON-like (paths become strings, numpy values lists and numbers) so that it can travel
on the bus and be stored; anything else fails the activity, not retryably, saying what to return.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePath, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import msgspec

from skyweave.authoring.external import File, Folder, from_product
from skyweave.errors import Fatal, NotFoundError, SkyweaveError, TaskFailure
from skyweave.model.context import context
from skyweave.model.ids import PRODUCT, new_id
from skyweave.model.messages import DispatchActivity, NewProduct, ProductRef
from skyweave.model.product import Product
from skyweave.model.records import ProductRecord
from skyweave.storage import inplace, locate
from skyweave.storage.base import ObjectMissingError, Storage, StoredFile
from skyweave.storage.local import LocalStorage, checksum_unchanged, file_uri, remember_checksum

MARKER = "$product"

PREPARE_OUTPUT = "skyweave.prepare_output"
"""Key in ``ctx.extra``: a list of callables ``(product_id, product) -> None`` that aspects register
in ``before``.  Each runs on every new output file just before it is moved into storage and
checksummed, so what it changes (e.g. FITS provenance keywords) is in the recorded checksum.  It
never runs on a file registered in place: that file is not the activity's to change."""


def _prepare_hooks() -> list[Callable[[str, Product], None]]:
    try:
        return list(context().extra.get(PREPARE_OUTPUT, ()))
    except SkyweaveError:  # not inside an activity (direct calls in tests): no hooks
        return []


INPUTS = ".inputs"
"""Inputs kept in a storage that is not a local folder are copied to ``<work dir>/.inputs/<id>/``."""


def bind_arguments(arguments: dict[str, Any], products: dict[str, ProductRef],
                   stage_in: Callable[[], Path] | None = None) -> dict[str, Any]:
    """The arguments with every ``{"$product": id}`` marker replaced by a ``Product``.

    A product whose URI is not a local file is copied (checksummed on the way) under the folder
    ``stage_in()`` returns, so the task reads a local file wherever the product is stored.
    """

    def bind(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and MARKER in value:
                return _input_product(value[MARKER], products, stage_in)
            return {key: bind(item) for key, item in value.items()}
        if isinstance(value, list):
            return [bind(item) for item in value]
        return value

    return {name: bind(value) for name, value in arguments.items()}


def _staged(ref: ProductRef, stage_in: Callable[[], Path] | None) -> Path:
    """A local copy of a product held in a storage that is not a local folder.  A missing object
    leaves the path absent: input validation then reports it like a missing local file."""
    storage, key = locate(ref.uri)
    if stage_in is None:
        raise Fatal(f"input {ref.id} is at {ref.uri} and there is no work directory to copy it to",
                    hint="run activities through the boundary (executors/boundary.py)")
    target = stage_in() / ref.id / PurePosixPath(key).name
    try:
        stored = storage.get(key, target)
    except ObjectMissingError:
        return target
    remember_checksum(target, target.stat(), stored.checksum)  # validation need not read it again
    return target


def _input_product(product_id: str, products: dict[str, ProductRef],
                   stage_in: Callable[[], Path] | None = None) -> Product:
    ref = products.get(product_id)
    if ref is None:
        raise Fatal(
            f"an argument refers to product {product_id!r} that the dispatch does not describe",
            hint="this is a controller bug: every product marker must come with its ProductRef",
        )
    local = urlparse(ref.uri).scheme in ("", "file")
    path = LocalStorage.local_path(ref.uri) if local else _staged(ref, stage_in)
    return from_product(Product(
        path,
        type=ref.type,
        obs_id=ref.obs_id,
        detector=ref.detector,
        version=ref.version,
        attributes=dict(ref.attributes),
        name=path.name,
        id=ref.id,
        uri=ref.uri,
        checksum=ref.checksum,
        size=ref.size,
    ))


def _replace_products(value: Any, found: list[tuple[str, Product]], in_place: list[ProductRecord],
                      task_name: str) -> Any:
    """``value`` with each new ``Product`` replaced by a marker; collects ``(new id, product)``, and
    the records of ``File``/``Folder`` objects (registered where they are, never moved)."""
    if isinstance(value, File | Folder) and (value.id is None or value.uri is None):
        try:
            rec = inplace.record(value.spec())
        except NotFoundError as exc:
            raise TaskFailure(
                f"task {task_name!r} returned {type(value).__name__}({str(value.path)!r}): {exc.message}",
                error_type="skyweave.MissingOutput", retryable=False,
                hint="return File/Folder objects only for data that exists") from None
        in_place.append(rec)
        return {MARKER: rec.id}
    if isinstance(value, Product):
        if value.id is not None and value.uri is not None:
            return {MARKER: value.id}  # an input passed through: already stored
        product_id = new_id(PRODUCT)
        found.append((product_id, value))
        return {MARKER: product_id}
    if isinstance(value, dict):
        return {key: _replace_products(item, found, in_place, task_name) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_products(item, found, in_place, task_name) for item in value]
    return value


def provider_params(params: dict[str, Any], task_name: str) -> dict[str, Any]:
    """A ``MissingInput``'s ``provider_params`` with every stored ``Product`` among them (e.g. the
    task's own ``File``/``Folder`` input) replaced by a ``{"$product": id}`` marker, so the provider
    receives it back as a product and its checksum is part of the provider's cache key."""

    def mark(value: Any) -> Any:
        if isinstance(value, Product):
            if value.id is None or value.uri is None:
                raise TaskFailure(
                    f"task {task_name!r} passed a new Product ({str(value.path)!r}) in provider_params",
                    error_type="skyweave.DefinitionError", retryable=False,
                    hint="provider_params may hold the task's input products (and File/Folder inputs), "
                         "not products it made: pass their paths or values instead")
            return {MARKER: value.id}
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [mark(item) for item in value]
        return value

    return {name: mark(value) for name, value in params.items()}


def _enc_hook(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise NotImplementedError


_json = msgspec.json.Encoder(enc_hook=_enc_hook)


def to_json_like(value: Any, task_name: str) -> Any:
    """``value`` as plain JSON types (paths become strings, numpy values lists and numbers)."""
    try:
        return msgspec.json.decode(_json.encode(value))
    except (TypeError, NotImplementedError, msgspec.EncodeError) as exc:
        culprit = _unencodable(value) or type(value)
        raise TaskFailure(
            f"task {task_name!r} returned a value of type {culprit.__qualname__} that cannot be stored; "
            "return JSON-like values or Product objects",
            error_type="skyweave.UnstorableResult",
            retryable=False,
        ) from exc


def _unencodable(value: Any) -> type | None:
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        try:
            _json.encode(value)
        except (TypeError, NotImplementedError, msgspec.EncodeError):
            return type(value)
        return None
    for item in items:
        culprit = _unencodable(item)
        if culprit is not None:
            return culprit
    return None


def made_by_activity(path: Path, workdir: Path) -> bool:
    """Whether ``path`` lies inside the work directory (its folders resolved, so ``..`` and
    symlinked folders cannot make a file elsewhere look inside; the file name itself is not
    followed: a link the activity made in its work directory is the activity's own file)."""
    try:
        folder = Path(os.path.abspath(path)).parent.resolve()
        return folder.is_relative_to(workdir.resolve())
    except (OSError, RuntimeError):  # a symlink loop: not a folder the activity made
        return False


def store_products(
    storage: Storage, dispatch: DispatchActivity, workdir: Path, value: Any
) -> tuple[Any, list[NewProduct]]:
    """Register returned products: files the activity made (in ``workdir``) are moved into
    storage, any other file is registered in place; the result with markers in their place."""
    if value is None or isinstance(value, str | int | float | bool):
        return value, []
    task = dispatch.task
    found: list[tuple[str, Product]] = []
    in_place: list[ProductRecord] = []
    result = _replace_products(value, found, in_place, task.name)
    result = to_json_like(result, task.name)
    names: dict[str, Product] = {}
    placement: list[str | None] = []
    """Per product: its name in storage, or ``None`` when it is registered in place."""
    for _, product in found:
        path = product.local_path
        if not path.is_file():
            raise TaskFailure(
                f"task {task.name!r} returned a product whose file does not exist: {path}",
                error_type="skyweave.MissingOutput",
                retryable=False,
                hint="write the file before returning Product(path); use ctx.output(name) for a path",
            )
        if not made_by_activity(path, workdir):
            placement.append(None)
            continue
        name = _name_in_workdir(path, workdir)
        if name in names:
            raise TaskFailure(
                f"task {task.name!r} returned two products stored as {name!r}",
                error_type="skyweave.DuplicateOutput",
                retryable=False,
                hint="give each product file a distinct name",
            )
        names[name] = product
        placement.append(name)
    products = [NewProduct(id=r.id, uri=r.uri, name=r.name, type=r.type, checksum=r.checksum, size=r.size,
                           obs_id=r.obs_id, detector=r.detector, version=r.version,
                           attributes=dict(r.attributes)) for r in {r.id: r for r in in_place}.values()]
    hooks = _prepare_hooks()
    for (product_id, product), stored_as in zip(found, placement, strict=True):
        if stored_as is None:
            uri, checksum, size = _in_place(product.local_path)
        else:
            for hook in hooks:
                hook(product_id, product)
            uri, checksum, size = storage.store_file(
                product.local_path, dispatch.run_id, dispatch.activity_id, stored_as
            )
        products.append(
            NewProduct(
                id=product_id,
                uri=uri,
                name=product.name or product.local_path.name,
                type=product.type,
                checksum=checksum,
                size=size,
                obs_id=product.obs_id or dispatch.obs_id,
                detector=product.detector,
                version=product.version or task.version,
                attributes=dict(product.attributes),
            )
        )
    return result, products


def _name_in_workdir(path: Path, workdir: Path) -> str:
    """The file's path relative to the work directory (the name it is stored under)."""
    folder = Path(os.path.abspath(path)).parent.resolve()
    return (folder / path.name).relative_to(workdir.resolve()).as_posix()


def _in_place(path: Path) -> StoredFile:
    """A file registered where it is: its URI, checksum (read only) and size."""
    absolute = Path(os.path.abspath(path))
    checksum, stat = checksum_unchanged(absolute)
    return StoredFile(file_uri(absolute), checksum, stat.st_size)
