"""In-memory state of one run inside the controller: node instances and the wiring logic.

A *node instance* is one position of a node in the fan-out (key ``()`` for a single activity,
``(3,)`` for the 4th item, ``(3, 1)`` inside a nested fan-out).  This module decides when an
instance can be created (all its arguments resolved), what its arguments are, and when a gather
can collect.  Pure: no I/O, no clocks.

Every question asked on an event costs O(1) in the size of the run: counters and indexes per
``(node, key prefix)`` are kept as instances are added and finished (``open_counts``,
``failed_counts``, ``members``), never recomputed by scanning a node's instances.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skyweave.authoring.graph import refs_in, topological_order, upstream
from skyweave.controller.expressions import select
from skyweave.errors import DefinitionError
from skyweave.model.records import RunRecord

Key = tuple[int, ...]

PENDING = "pending"
DONE = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"
TERMINAL = frozenset({DONE, FAILED, SKIPPED, CANCELLED})


class NotReady(Exception):
    """An argument's source is not there yet."""


class Skip(Exception):
    """An argument's source was skipped, or the condition is false: this instance is skipped.
    Its message says which (recorded on the skipped activity)."""


class Blocked(Exception):
    """An argument can never resolve (an upstream failure); the instance is never created."""


@dataclass(slots=True)
class Instance:
    node: str
    key: Key
    state: str = PENDING
    value: Any = None
    activity: str | None = None
    iteration: int = 0


def key_str(key: Key) -> str:
    return ".".join(map(str, key))


def parse_key(text: str) -> Key:
    return tuple(int(p) for p in text.split(".")) if text else ()


@dataclass
class RunState:
    record: RunRecord
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    downstream: dict[str, list[str]] = field(default_factory=dict)
    gather_nodes: dict[str, None] = field(default_factory=dict)
    """Nodes with a gather argument, in graph order (a dict: ordered, O(1) membership)."""
    gather_sources: dict[str, list[str]] = field(default_factory=dict)
    """Gather node -> the nodes it collects (a cheap "not yet" test before resolving)."""
    gather_watch: dict[str, list[str]] = field(default_factory=dict)
    """Node -> the gathers whose readiness an instance of it finishing can change: those that
    collect it or a node downstream of it, at a depth not above its own (a shallower node is
    final before any instance of the gathered node exists under the gather's key)."""
    gather_closure: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    """Gather node -> ``(node, n)`` for every node its collection waits for (what it gathers and
    everything upstream), upstream first: the gather at key ``k`` waits until no instance of
    ``node`` under ``k[:n]`` is open (``settled``, unrolled)."""
    gather_cursor: dict[tuple[str, Key], int] = field(default_factory=dict)
    """``(gather node, key)`` -> how far along its closure everything was found final, so each
    check resumes there (a gather over a fan-out of a loop-built list re-walked the list)."""
    plain_refs: dict[str, list[str]] = field(default_factory=dict)
    """Node -> the sources it takes one instance of (every reference but a real gather)."""
    insts: dict[str, dict[Key, Instance]] = field(default_factory=dict)
    open_counts: dict[tuple[str, Key], int] = field(default_factory=dict)
    """``(node, prefix)`` -> instances of ``node`` under ``prefix`` not terminal yet."""
    failed_counts: dict[tuple[str, Key], int] = field(default_factory=dict)
    """``(node, prefix)`` -> failed instances of ``node`` under ``prefix``."""
    members: dict[tuple[str, Key], list[Key]] = field(default_factory=dict)
    """``(node, proper prefix)`` -> keys of the instances of ``node`` under it, in creation order."""
    waiting: dict[tuple[str, Key], int] = field(default_factory=dict)
    """``(node, key)`` not created yet -> how many of ``plain_refs[node]`` were found ready, so
    the next attempt resumes there (a node over N loop-built refs would re-check them all)."""
    active: int = 0
    """Activities of this run not yet in a terminal state (deferred instances included)."""
    deferred: list[list[Any]] = field(default_factory=list)
    """Fan-outs not unfolded yet: ``[node, source key, next index, end]``, the latest last (and
    unfolded first: a group's leaves before more groups, so gathers complete and memory stays
    bounded).  Their instances count as open (``open_counts``) and active until ``undefer``."""
    failures: int = 0
    held: list[str] = field(default_factory=list)
    """Queued activity ids set aside while the run is paused."""

    @classmethod
    def from_record(cls, record: RunRecord) -> RunState:
        state = cls(record=record, nodes=dict(record.graph.get("nodes", {})))
        state.order = topological_order(record.graph)
        for node_id in state.order:
            state.insts[node_id] = {}
            state.downstream.setdefault(node_id, [])
        for node_id in state.order:
            for ref in dict.fromkeys(upstream(state.nodes[node_id])):
                state.downstream[ref].append(node_id)
            refs = _arg_refs(state.nodes[node_id]["args"])
            depth = state.depth(node_id)
            gathered = [a["ref"] for a in refs
                        if a.get("iter") == "gather" and state.depth(a["ref"]) > depth]
            state.plain_refs[node_id] = list(dict.fromkeys(
                [a["ref"] for a in refs if a["ref"] not in gathered]
                + refs_in(state.nodes[node_id].get("when"))))
            if gathered:
                state.gather_nodes[node_id] = None
                state.gather_sources[node_id] = gathered
        position = {node_id: i for i, node_id in enumerate(state.order)}
        for node_id in state.gather_nodes:
            depth = state.depth(node_id)
            closure = sorted(state._closure(state.gather_sources[node_id]), key=position.__getitem__)
            for watched in closure:
                if state.depth(watched) >= depth:
                    state.gather_watch.setdefault(watched, []).append(node_id)
            # the prefix settled() looks at for each node: cut to the shallowest depth on a path
            prefix = {src: min(depth, state.depth(src)) for src in state.gather_sources[node_id]}
            for name in reversed(closure):
                for ref in upstream(state.nodes[name]):
                    prefix[ref] = min(prefix.get(ref, depth), prefix[name], state.depth(ref))
            state.gather_closure[node_id] = [(name, prefix[name]) for name in closure]
        return state

    def _closure(self, nodes: list[str]) -> list[str]:
        """``nodes`` and everything upstream of them."""
        seen = dict.fromkeys(nodes)
        stack = list(nodes)
        while stack:
            for ref in upstream(self.nodes[stack.pop()]):
                if ref not in seen:
                    seen[ref] = None
                    stack.append(ref)
        return list(seen)

    # -- bookkeeping ------------------------------------------------------------------------------
    def depth(self, node: str) -> int:
        return int(self.nodes[node]["depth"])

    def add_instance(self, inst: Instance) -> None:
        self.insts[inst.node][inst.key] = inst
        self.waiting.pop((inst.node, inst.key), None)
        self.gather_cursor.pop((inst.node, inst.key), None)
        for i in range(len(inst.key)):
            self.members.setdefault((inst.node, inst.key[:i]), []).append(inst.key)
        if inst.state not in TERMINAL:
            for i in range(len(inst.key) + 1):
                k = (inst.node, inst.key[:i])
                self.open_counts[k] = self.open_counts.get(k, 0) + 1
        elif inst.state == FAILED:
            self._count_failed(inst, +1)

    def defer(self, node: str, source: Key, width: int) -> None:
        """Instances ``(*source, 0)`` .. ``(*source, width - 1)`` of ``node`` are to be created
        later, a chunk at a time: until then they count as open and active, so no gather over
        them collects and the run does not end."""
        self.deferred.append([node, source, 0, width])
        self.active += width
        for i in range(len(source) + 1):
            k = (node, source[:i])
            self.open_counts[k] = self.open_counts.get(k, 0) + width

    def undefer(self, limit: int) -> list[tuple[str, Key]]:
        """Up to ``limit`` deferred ``(node, key)``, no longer counted: the caller creates them."""
        out: list[tuple[str, Key]] = []
        while self.deferred and len(out) < limit:
            entry = self.deferred[-1]
            node, source, start, end = entry
            stop = min(end, start + limit - len(out))
            out.extend((node, (*source, j)) for j in range(start, stop))
            taken = stop - start
            self.active -= taken
            for i in range(len(source) + 1):
                self.open_counts[(node, source[:i])] -= taken
            entry[2] = stop
            if stop == end:
                self.deferred.pop()
        return out

    def _count_failed(self, inst: Instance, delta: int) -> None:
        for i in range(len(inst.key) + 1):
            k = (inst.node, inst.key[:i])
            self.failed_counts[k] = self.failed_counts.get(k, 0) + delta

    def finish_instance(self, inst: Instance, state: str, value: Any = None) -> None:
        was_open = inst.state not in TERMINAL
        inst.state = state
        inst.value = value
        if was_open:
            for i in range(len(inst.key) + 1):
                self.open_counts[(inst.node, inst.key[:i])] -= 1
        if state == FAILED:
            self._count_failed(inst, +1)

    def reopen_instance(self, inst: Instance) -> None:
        """A failed or cancelled instance is retried."""
        self.gather_cursor.clear()  # what was final may not be any more
        if inst.state == FAILED:
            self._count_failed(inst, -1)
        if inst.state in TERMINAL:
            for i in range(len(inst.key) + 1):
                k = (inst.node, inst.key[:i])
                self.open_counts[k] = self.open_counts.get(k, 0) + 1
        inst.state = PENDING

    # -- finality of a node's instances under a key prefix -----------------------------------------
    def settled(self, node: str, prefix: Key) -> tuple[bool, bool]:
        """``(final, clean)``: no more instances of ``node`` will appear or change under
        ``prefix``; and none of them, nor anything they depend on there, failed."""
        clean = True
        seen: set[tuple[str, Key]] = set()
        stack = [(node, prefix[: self.depth(node)])]
        while stack:
            item = stack.pop()
            if item in seen:
                continue
            seen.add(item)
            if self.open_counts.get(item, 0) > 0:
                return False, clean
            n, p = item
            clean = clean and self.failed_counts.get(item, 0) == 0
            stack.extend((ref, p[: self.depth(ref)]) for ref in upstream(self.nodes[n]))
        return True, clean

    def gather_final(self, node: str, key: Key) -> bool:
        """``settled`` for every source of gather ``node`` at ``key``, without ``clean``: walks its
        closure upstream first and resumes where the last call stopped.  Sound because a node
        after the cursor cannot get new instances under the key once all before it are final
        (instances are created as soon as their inputs are), and a retry resets every cursor."""
        closure = self.gather_closure[node]
        i = self.gather_cursor.get((node, key), 0)
        while i < len(closure):
            name, n = closure[i]
            if self.open_counts.get((name, key[:n]), 0) > 0:
                break
            i += 1
        self.gather_cursor[(node, key)] = i
        return i == len(closure)

    def ready(self, node: str, key: Key) -> bool:
        """Whether every source ``node`` takes one instance of is there and terminal at ``key``
        (a cheap test before resolving); resumes where the last call for ``key`` stopped."""
        refs = self.plain_refs[node]
        i = self.waiting.get((node, key), 0)
        while i < len(refs):
            src = refs[i]
            inst = self.insts[src].get(key[: self.depth(src)])
            if inst is None or inst.state == PENDING:
                self.waiting[(node, key)] = i
                return False
            i += 1
        self.waiting.pop((node, key), None)
        return True

    # -- resolution ------------------------------------------------------------------------------
    def source(self, node: str, key: Key) -> Instance:
        inst = self.insts[node].get(key[: self.depth(node)])
        if inst is None or inst.state == PENDING:
            raise NotReady
        if inst.state == SKIPPED:
            raise Skip(f"its input from {node} was skipped")
        if inst.state != DONE:
            raise Blocked
        return inst

    def resolve_arg(self, arg: dict[str, Any], key: Key, node_depth: int) -> Any:
        if "lit" in arg:
            return arg["lit"]
        if "product" in arg:
            return {"$product": arg["product"]}
        if "list" in arg:
            return [self.resolve_arg(a, key, node_depth) for a in arg["list"]]
        if "dict" in arg:
            return {k: self.resolve_arg(a, key, node_depth) for k, a in arg["dict"].items()}
        node, path, it = arg["ref"], list(arg.get("path", [])), arg.get("iter", "bcast")
        d = self.depth(node)
        if it == "each":
            items = select(self.source(node, key).value, path)
            return items[key[d]]
        if it == "gather" and d > len(key):
            final, clean = self.settled(node, key)
            if not final:
                raise NotReady
            if not clean:
                raise Blocked
            insts = self.insts[node]
            chosen = sorted(k for k in self.members.get((node, key), ()) if insts[k].state == DONE)
            return [select(insts[k].value, path) for k in chosen]
        if it == "gather":  # a single activity gathered: an optional input, [] when it was skipped
            try:
                return [select(self.source(node, key).value, path)]
            except Skip:
                return []
        return select(self.source(node, key).value, path)

    def resolve_ref(self, node: str, path: list[Any], key: Key) -> Any:
        return select(self.source(node, key).value, path)

    def fanout_problem(self, node_id: str, result: Any) -> str | None:
        """Why ``result`` of ``node_id`` cannot be fanned out over by a downstream ``each``, if so."""
        for down in self.downstream[node_id]:
            for arg in self.nodes[down]["args"].values():
                if arg.get("ref") == node_id and arg.get("iter") == "each":
                    try:
                        items = select(result, list(arg.get("path", [])))
                    except DefinitionError as exc:
                        return f"{down} fans out over {node_id}: {exc.message}"
                    if not isinstance(items, list):
                        return (f"{down} fans out over the output of {node_id}, which returned a "
                                f"{type(items).__name__}, not a list; return a list (empty for none)")
        return None

    # -- candidate keys ----------------------------------------------------------------------------
    def driver(self, node: str) -> tuple[str, dict[str, Any]] | None:
        spec = self.nodes[node]
        depth = spec["depth"]
        for name, arg in spec["args"].items():
            if arg.get("iter") == "each" and self.depth(arg["ref"]) + 1 == depth:
                return name, arg
        for name, arg in spec["args"].items():
            if arg.get("iter") == "zip" and self.depth(arg["ref"]) == depth:
                return name, arg
        for name, arg in spec["args"].items():
            if arg.get("iter") == "gather" and self.depth(arg["ref"]) > depth:
                return name, arg  # a map of gathers: one activity per group of the nested fan-out
        return None

    def candidate_keys(self, node: str, prefix: Key = ()) -> list[Key]:
        """Every key ``node`` could have under ``prefix`` given what its driver produced so far
        (looks only at the driver's instances under ``prefix``)."""
        depth = self.depth(node)
        if depth == 0:
            return [()]
        found = self.driver(node)
        if found is None:
            return []
        _, arg = found
        src = arg["ref"]
        d_src = self.depth(src)
        if len(prefix) >= d_src:
            under = [prefix[:d_src]] if prefix[:d_src] in self.insts[src] else []
        else:
            under = self.members.get((src, prefix), [])
        keys: list[Key] = []
        for k in under:
            inst = self.insts[src][k]
            if arg["iter"] == "gather":
                keys.append(k[:depth])
                continue
            if inst.state != DONE:
                continue
            if arg["iter"] == "each":
                try:
                    items = select(inst.value, list(arg.get("path", [])))
                except Exception:  # a non-list is reported when the source finishes
                    continue
                if isinstance(items, list):
                    keys.extend((*k, i) for i in range(len(items)))
            else:
                keys.append(k)
        return list(dict.fromkeys(k for k in keys if k[: len(prefix)] == prefix))

    def is_candidate(self, node: str, key: Key) -> bool:
        """``key in candidate_keys(node, key)`` for a full-length ``key``, in O(1)."""
        found = self.driver(node)
        if found is None:
            return key == ()
        _, arg = found
        src = arg["ref"]
        d_src = self.depth(src)
        if arg["iter"] == "gather":
            return bool(self.members.get((src, key)))
        inst = self.insts[src].get(key[:d_src])
        if inst is None or inst.state != DONE:
            return False
        if arg["iter"] != "each":
            return True
        try:
            items = select(inst.value, list(arg.get("path", [])))
        except Exception:  # a non-list is reported when the source finishes
            return False
        return isinstance(items, list) and key[-1] < len(items)


def _arg_refs(args: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack: list[Any] = list(args.values())
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "ref" in item:
                found.append(item)
            else:
                stack.extend(item.get("list", []))
                stack.extend(item.get("dict", {}).values())
    return found
