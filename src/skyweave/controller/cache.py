"""Smart recomputation: the cache key of an activity.

key = sha256 of (task name, version, code hash, image, the parameters that matter, and the
*content* hash of every input product).  Two activities with the same key would compute the same
thing, so the second reuses the first one's outputs — after the shell has checked that those
outputs are still intact (checksums), never silently.  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from skyweave.model.messages import ProductRef
from skyweave.model.specs import TaskSpec

_encoder = msgspec.json.Encoder(order="sorted")


class UnknownInput(Exception):
    """An input product's content hash is not known, so the activity cannot be keyed."""


def _content(value: Any, products: Mapping[str, ProductRef]) -> Any:
    if isinstance(value, dict):
        pid = value.get("$product")
        if isinstance(pid, str) and len(value) == 1:
            ref = products.get(pid)
            if ref is None or not ref.checksum:
                raise UnknownInput(pid)
            return {"$content": ref.checksum}
        return {k: _content(v, products) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_content(v, products) for v in value]
    return value


def cache_key(spec: TaskSpec, arguments: Mapping[str, Any], products: Mapping[str, ProductRef]
              ) -> str | None:
    """The activity's cache key, or ``None`` when it must not be reused (task opted out, an input
    of unknown content, or arguments that cannot be encoded)."""
    if not spec.cache:
        return None
    chosen = arguments if spec.cache_params is None else {
        k: v for k, v in arguments.items() if k in spec.cache_params}
    try:
        body = {
            "task": spec.name, "version": spec.version, "code": spec.code_hash, "image": spec.image,
            "kind": str(spec.kind), "ref": spec.ref if spec.kind != "python" else "",
            "arguments": _content(dict(chosen), products),
        }
        data = _encoder.encode(body)
    except (UnknownInput, TypeError, msgspec.EncodeError):
        return None
    return "sha256:" + hashlib.sha256(data).hexdigest()
