"""The broker-side kill switch: the account's own ``suspend_trade`` configuration (Alpaca), set
by ``lockdown --suspend-at-broker`` and cleared by ``unlock``.

It reaches what the gateway's own lockdown cannot: a bot host that still holds an old broker key
and talks to the broker directly. The record of whether the gateway set it lives in the home
(``broker_suspension.json``), so ``unlock`` clears only a suspension the gateway made (never one an
operator set in the broker's dashboard), from the running gateway or from the command line alike.

``suspend(venue, ...)`` and ``lift(venue, ...)`` take any object with Alpaca's account-configuration
calls (``update_account_configurations``); the running gateway passes its venue, the command line
an Alpaca venue built from the vault's broker key. This module imports no venue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..errors import GatewayError
from ..home import write_public
from ..model import utcnow

FILE_NAME = "broker_suspension.json"
CONFIGURATION = "suspend_trade"


def record_path(home_root: Path) -> Path:
    return Path(home_root) / FILE_NAME


@dataclass(frozen=True, slots=True)
class SuspensionRecord:
    suspended: bool
    since: datetime | None = None
    reason: str = ""
    actor: str = ""
    upstream: str = ""  # the broker's base URL it was set at (unlock from the CLI lifts it there)

    def to_json(self) -> dict[str, Any]:
        return {
            "suspended": self.suspended,
            "since": self.since.isoformat() if self.since else None,
            "reason": self.reason,
            "actor": self.actor,
            "upstream": self.upstream,
        }


def read_record(home_root: Path) -> SuspensionRecord:
    """What the gateway last did at the broker; unreadable counts as set (so unlock tries to lift it)."""
    try:
        raw = orjson.loads(record_path(home_root).read_bytes())
    except FileNotFoundError:
        return SuspensionRecord(False)
    except (OSError, orjson.JSONDecodeError):
        return SuspensionRecord(True, reason="the record is unreadable")
    if not isinstance(raw, dict):
        return SuspensionRecord(True, reason="the record is unreadable")
    since = raw.get("since")
    try:
        when = datetime.fromisoformat(since) if isinstance(since, str) else None
    except ValueError:
        when = None
    return SuspensionRecord(
        bool(raw.get("suspended")), when, str(raw.get("reason", "")), str(raw.get("actor", "")),
        str(raw.get("upstream", "")),
    )


def _write(home_root: Path, record: SuspensionRecord) -> None:
    write_public(record_path(home_root), orjson.dumps(record.to_json(), option=orjson.OPT_INDENT_2) + b"\n")


async def suspend(venue: Any, home_root: Path, reason: str, actor: str) -> SuspensionRecord:
    """Set ``suspend_trade`` at the broker, then record it. Raises GatewayError (NotServed when the
    venue has no such configuration) and records nothing then."""
    await venue.update_account_configurations({CONFIGURATION: True})
    record = SuspensionRecord(True, utcnow(), reason, actor, str(getattr(venue, "base_url", "")))
    _write(home_root, record)
    return record


async def lift(venue: Any, home_root: Path) -> bool:
    """Clear ``suspend_trade`` if the gateway set it; True when it was lifted, False when there was
    nothing of ours to lift. Raises GatewayError when the broker refused (the record stays)."""
    if not read_record(home_root).suspended:
        return False
    await venue.update_account_configurations({CONFIGURATION: False})
    _write(home_root, SuspensionRecord(False, utcnow()))
    return True


def describe(exc: GatewayError) -> str:
    return f"{exc.kind}: {exc.message}"
