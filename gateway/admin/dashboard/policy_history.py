"""The applied policy versions (the home's policy history) with each one's diff against the
version before it, classified by ``gateway.policy.diff`` (tighten / loosen / same)."""

from __future__ import annotations

import hashlib
import re

from ...home import Home
from ...policy.diff import diff_policies, format_value
from ...policy.schema import PolicyError, parse_policy

_NAME = re.compile(r"^v(\d+)\.yaml$")


def history(home: Home, limit: int = 20) -> list[dict]:
    """Newest first, at most ``limit`` versions."""
    if not home.policy_history.is_dir():
        return []
    files = sorted(
        (int(m.group(1)), p) for p in home.policy_history.iterdir() if (m := _NAME.match(p.name))
    )
    files = files[-(limit + 1) :]
    out = []
    previous = None
    for version, path in files:
        data = path.read_bytes()
        try:
            policy = parse_policy(data).policy
        except PolicyError as exc:
            out.append({"version": version, "error": str(exc)})
            previous = None
            continue
        entry = {"version": version, "sha256": hashlib.sha256(data).hexdigest(), "changes": None}
        if previous is not None:
            entry["changes"] = [
                {"name": c.name, "old": format_value(c.old), "new": format_value(c.new), "direction": c.direction, "reason": c.reason}
                for c in diff_policies(previous, policy)
                if c.name != "version"  # every entry has a new version: not news
            ]
        out.append(entry)
        previous = policy
    return list(reversed(out[-limit:]))
