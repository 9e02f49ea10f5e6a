"""Field paths into a report's JSON, the changes between two reports, and replaying an audit trail.

A path is dotted keys with bracketed list selectors, e.g. `conclusions[grade].label`,
`consistency_flags[F2].dismissal`, `narrative[diagnosis].sentences[1]`. A selector picks the
list item whose identity field (`IDENTITY`, the first one the item has) equals it, or, for
items without one, the item at that index.
"""

from __future__ import annotations

import re
from copy import deepcopy
from typing import Any

from schemas.report import AuditEntry, EvidenceChainReport

IDENTITY = ("id", "task", "key", "marker", "rank")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\[\]]+)\]")
_PATH = re.compile(r"[^.\[\]]+(?:\[[^\[\]]+\]|\.[^.\[\]]+)*")


def _identity(item: Any) -> str | None:
    if isinstance(item, dict):
        for name in IDENTITY:
            if name in item:
                return str(item[name])
    return None


def parse(path: str) -> list[tuple[str, str]]:
    """('key', name) and ('item', selector) segments; ValueError naming the path when it is malformed."""
    if not _PATH.fullmatch(path):
        raise ValueError(f"malformed field path {path!r}")
    return [("key", key) if key else ("item", item) for key, item in _SEGMENT.findall(path)]


def _child_index(items: list, selector: str, path: str) -> int:
    if items and _identity(items[0]) is not None:
        for i, item in enumerate(items):
            if _identity(item) == selector:
                return i
        raise KeyError(f"{path}: no item [{selector}]")
    if selector.isdigit() and int(selector) < len(items):
        return int(selector)
    raise KeyError(f"{path}: no item [{selector}]")


def get_path(data: Any, path: str) -> Any:
    node = data
    for kind, name in parse(path):
        node = node[name] if kind == "key" else node[_child_index(node, name, path)]
    return node


def set_path(data: Any, path: str, value: Any) -> None:
    """Set the value at `path` in place (the last list index may equal the length: append)."""
    *head, (kind, name) = parse(path)
    parent = data
    for k, n in head:
        parent = parent[n] if k == "key" else parent[_child_index(parent, n, path)]
    if kind == "key":
        parent[name] = deepcopy(value)
    elif not parent or _identity(parent[0]) is None and name == str(len(parent)):
        parent.append(deepcopy(value))
    else:
        parent[_child_index(parent, name, path)] = deepcopy(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def diff(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(path, before, after) for every changed field, as deep as list identities allow."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict) and before.keys() == after.keys():
        return [change for key in after for change in diff(before[key], after[key], _join(prefix, key))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and before:
        ids_before = [_identity(i) for i in before]
        if ids_before == [_identity(i) for i in after] and all(isinstance(i, dict) for i in before + after):
            selectors = ids_before if ids_before[0] is not None else [str(i) for i in range(len(before))]
            if len(set(selectors)) == len(selectors):
                return [c for sel, b, a in zip(selectors, before, after) for c in diff(b, a, f"{prefix}[{sel}]")]
    return [(prefix, before, after)]


def content_changes(before: EvidenceChainReport, after: EvidenceChainReport) -> list[tuple[str, Any, Any]]:
    """Changed fields outside the review block (which review actions record themselves)."""
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    old.pop("review"), new.pop("review")
    return diff(old, new)


def replay(base: EvidenceChainReport, trail: list[AuditEntry]) -> EvidenceChainReport:
    """The report that `trail` makes of `base`: each entry with a field sets it to its `after` value, in order.

    `base` is the report as first written (its trail is the start of `trail`); review-block
    fields (status, reviewer, version, supersedes) are entries like any other.
    """
    data = base.model_dump(mode="json")
    for entry in trail:
        if entry.field is not None:
            set_path(data, entry.field, entry.after)
    data["review"]["audit_trail"] = [e.model_dump(mode="json") for e in trail]
    return EvidenceChainReport.model_validate(data)
