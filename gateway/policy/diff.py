"""Field-by-field comparison of two policies: which changes tighten and which loosen.

Public API
----------
``FieldChange(name, old, new, direction, reason="")``
    One changed field. ``name`` is the dotted path (``account.max_position_pct``); for a rail
    ``old``/``new`` are ``Rail`` objects (``None`` when the rail is absent on that side), for any
    other field the plain values. ``direction`` is ``"tighten"``, ``"loosen"`` or ``"same"``;
    ``reason`` says why, in words.
``diff_policies(old: Policy, new: Policy) -> list[FieldChange]``
    Every field whose value differs, rails first (in the old policy's order), then other fields.
``is_loosening(changes) -> bool``
    True when any change loosens.
``loosened(changes) -> list[FieldChange]``
``render_diff(changes, *, old_version=None, new_version=None) -> str``
    The text ``gatewayctl policy diff`` prints: each field with ``old → new`` and
    TIGHTEN / LOOSEN / SAME, then a one-line verdict.

How a change is classified
--------------------------
Rails are classified generically from the schema: ``rail_meta(name)["tighter"]`` says whether
a lower or a higher limit is tighter.

* turning a rail off loosens, turning it on tightens; changes to a rail that is off on both
  sides have no effect (``same``);
* moving the limit away from the tighter side loosens (raising a ``tighter: lower`` maximum,
  lowering a ``tighter: higher`` minimum), toward it tightens;
* ``on_violation`` from ``reject`` to ``clamp`` loosens, ``clamp`` to ``reject`` tightens;
* a rail changing in several ways at once takes the worst direction (any loosening wins);
* a rail present on one side only (possible inside mappings, e.g. per asset class) loosens
  either way: what its absence meant is not known here, so it fails safe.

Fields that are not rails are compared as leaves of the two documents (lists are one leaf):

* ``version``, ``gateway_id``, ``expires`` and ``description`` are metadata, checked elsewhere
  (rollback, wrong gateway, expiry) and classified ``same``. A later ``expires`` is not a
  loosening: every new policy normally carries one;
* a field whose schema declares ``json_schema_extra={"tighter": "lower"|"higher"}`` (numbers) or
  ``{"tighter": "subset"}`` (an allowlist: fewer entries is tighter) or
  ``{"tighter": "superset"}`` (a denylist: more entries is tighter) is classified by that;
* **any other change is classified as loosening (fail safe)**, so a field this module does not
  understand can only ever require more signers, never fewer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Literal

from pydantic import BaseModel

from .schema import Policy, Rail, rail_meta

Direction = Literal["tighten", "loosen", "same"]

METADATA_FIELDS = frozenset({"version", "gateway_id", "expires", "description"})

_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<absent>"})()


@dataclass(frozen=True)
class FieldChange:
    name: str
    old: Any
    new: Any
    direction: Direction
    reason: str = ""


# --- rails ------------------------------------------------------------------------------------

_RANK = {"same": 0, "tighten": 1, "loosen": 2}


def _worst(steps: list[tuple[Direction, str]]) -> tuple[Direction, str]:
    if not steps:
        return "same", "no effective change"
    top = max(_RANK[d] for d, _ in steps)
    chosen = [(d, r) for d, r in steps if _RANK[d] == top]
    return chosen[0][0], "; ".join(r for _, r in chosen)


def _limit_direction(tighter: Any, old: Decimal, new: Decimal) -> tuple[Direction, str]:
    if tighter == "lower":
        return ("loosen", "limit raised") if new > old else ("tighten", "limit lowered")
    if tighter == "higher":
        return ("loosen", "limit lowered") if new < old else ("tighten", "limit raised")
    return "loosen", "limit changed on a rail whose direction is not declared (fail safe)"


def _classify_rail(
    root: type[BaseModel], name: str, old: Rail | None, new: Rail | None
) -> tuple[Direction, str]:
    if old is None:
        return "loosen", "rail added; its absence had no known meaning (fail safe)"
    if new is None:
        return "loosen", "rail removed"
    if not old.enabled and not new.enabled:
        return "same", "off on both sides"
    if old.enabled and not new.enabled:
        return "loosen", "turned off"
    if not old.enabled and new.enabled:
        return "tighten", "turned on"
    try:
        tighter = rail_meta(name).get("tighter")
    except KeyError:  # not in the schema's Policy (e.g. a subclass): read the field itself
        tighter = _field_meta(root, name).get("tighter")
    steps: list[tuple[Direction, str]] = []
    if old.limit != new.limit:
        if old.limit is None or new.limit is None:
            steps.append(("loosen", "limit changed (fail safe)"))
        else:
            steps.append(_limit_direction(tighter, old.limit, new.limit))
    if old.on_violation != new.on_violation:
        if (old.on_violation, new.on_violation) == ("reject", "clamp"):
            steps.append(("loosen", "now clamps instead of rejecting"))
        elif (old.on_violation, new.on_violation) == ("clamp", "reject"):
            steps.append(("tighten", "now rejects instead of clamping"))
        else:
            steps.append(("loosen", "on_violation changed (fail safe)"))
    return _worst(steps)


# --- other fields -----------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, skip: set[str], out: dict[str, Any]) -> None:
    if prefix and prefix in skip:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), skip, out)
        return
    out[prefix] = value


def _field_meta(root: type[BaseModel], dotted: str) -> dict[str, Any]:
    """Schema ``json_schema_extra`` of a (non-rail) field by dotted path, or {}."""
    model: Any = root
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return {}
        field = model.model_fields.get(parts[i])
        if field is None:
            return {}
        annotation = field.annotation
        is_mapping = getattr(annotation, "__origin__", None) is dict
        if i == len(parts) - 1 or (is_mapping and i == len(parts) - 2):
            extra = field.json_schema_extra
            return dict(extra) if isinstance(extra, dict) else {}
        if is_mapping:
            i += 1  # the mapping key
            annotation = annotation.__args__[1]
        model = annotation
        i += 1
    return {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _classify_leaf(root: type[BaseModel], name: str, old: Any, new: Any) -> tuple[Direction, str]:
    if name in METADATA_FIELDS:
        return "same", "metadata; checked separately"
    if old is _MISSING or new is _MISSING:
        return "loosen", ("field added" if old is _MISSING else "field removed") + " (fail safe)"
    tighter = _field_meta(root, name).get("tighter")
    if tighter in ("lower", "higher") and _is_number(old) and _is_number(new):
        return _limit_direction(tighter, Decimal(str(old)), Decimal(str(new)))
    if tighter in ("subset", "superset") and isinstance(old, (list, tuple, set, frozenset)) and isinstance(
        new, (list, tuple, set, frozenset)
    ):
        try:
            old_set, new_set = set(old), set(new)
        except TypeError:
            return "loosen", "unclassified change (fail safe)"
        if tighter == "subset":
            if new_set <= old_set:
                return "tighten", "entries removed"
            return "loosen", "entries added: " + ", ".join(sorted(map(str, new_set - old_set)))
        if new_set >= old_set:
            return "tighten", "entries added"
        return "loosen", "entries removed: " + ", ".join(sorted(map(str, old_set - new_set)))
    return "loosen", "a change this gateway cannot classify counts as loosening (fail safe)"


# --- public -----------------------------------------------------------------------------------


def diff_policies(old: Policy, new: Policy) -> list[FieldChange]:
    """Every differing field of ``old`` → ``new``, classified (see the module docstring)."""
    changes: list[FieldChange] = []
    old_rails, new_rails = old.rails(), new.rails()
    names = list(old_rails) + [n for n in new_rails if n not in old_rails]
    for name in names:
        before, after = old_rails.get(name), new_rails.get(name)
        if before == after:
            continue
        direction, reason = _classify_rail(type(new), name, before, after)
        changes.append(FieldChange(name, before, after, direction, reason))

    skip = set(names)
    old_leaves: dict[str, Any] = {}
    new_leaves: dict[str, Any] = {}
    _flatten(old.model_dump(mode="python"), "", skip, old_leaves)
    _flatten(new.model_dump(mode="python"), "", skip, new_leaves)
    for name in list(old_leaves) + [n for n in new_leaves if n not in old_leaves]:
        before, after = old_leaves.get(name, _MISSING), new_leaves.get(name, _MISSING)
        if before is not _MISSING and after is not _MISSING and before == after:
            continue
        direction, reason = _classify_leaf(type(new), name, before, after)
        changes.append(
            FieldChange(
                name,
                None if before is _MISSING else before,
                None if after is _MISSING else after,
                direction,
                reason,
            )
        )
    return changes


def is_loosening(changes: Iterable[FieldChange]) -> bool:
    return any(c.direction == "loosen" for c in changes)


def loosened(changes: Iterable[FieldChange]) -> list[FieldChange]:
    return [c for c in changes if c.direction == "loosen"]


def format_value(value: Any) -> str:
    """A field value as the diff shows it: rails as ``2``, ``off`` or ``50000 (clamp)``."""
    if value is None:
        return "(absent)"
    if isinstance(value, Rail):
        if not value.enabled:
            return "off"
        text = str(value.limit)
        return f"{text} (clamp)" if value.on_violation == "clamp" else text
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


_LABEL = {"tighten": "TIGHTEN", "loosen": "LOOSEN", "same": "SAME"}


def describe_change(change: FieldChange) -> str:
    """``account.max_position_pct: 1 → 2`` (used in refusal messages)."""
    return f"{change.name}: {format_value(change.old)} → {format_value(change.new)}"


def render_diff(
    changes: Iterable[FieldChange],
    *,
    old_version: int | None = None,
    new_version: int | None = None,
) -> str:
    """Text for ``gatewayctl policy diff``: one line per field, then the verdict."""
    changes = list(changes)
    lines: list[str] = []
    if old_version is not None or new_version is not None:
        lines.append(f"policy v{old_version if old_version is not None else '?'} → v{new_version if new_version is not None else '?'}")
    if not changes:
        lines.append("no changes")
        return "\n".join(lines) + "\n"
    rows = [(c.name, f"{format_value(c.old)} → {format_value(c.new)}", _LABEL[c.direction], c.reason) for c in changes]
    w_name = max(len(r[0]) for r in rows)
    w_value = max(len(r[1]) for r in rows)
    for name, value, label, reason in rows:
        line = f"  {name.ljust(w_name)}  {value.ljust(w_value)}  {label.ljust(7)}"
        if reason:
            line += f"  ({reason})"
        lines.append(line.rstrip())
    n_loose = sum(1 for c in changes if c.direction == "loosen")
    n_tight = sum(1 for c in changes if c.direction == "tighten")
    if n_loose:
        lines.append(
            f"LOOSENS {n_loose} field(s): needs the trust file's loosen_threshold of distinct trusted signers"
        )
    elif n_tight:
        lines.append(f"TIGHTENS {n_tight} field(s), loosens none")
    else:
        lines.append("no change to any limit")
    return "\n".join(lines) + "\n"
