"""Loss circuit breakers: daily, weekly and monthly loss from each period's starting equity.

``LossBreakers(path, now=utcnow)`` keeps, in a small JSON file, the starting equity of the
current UTC day, ISO week (Monday to Sunday, UTC) and calendar month (UTC). A period starts at
its first observation: the first ``observe`` call whose clock falls in a new day, week or
month records the starting equity of that period. For the day it prefers the venue's
``Account.last_equity`` (equity at the previous close) when it is above zero, so a gateway
started mid-morning still measures the day's loss from the open; the week and the month start
from the equity seen at their first observation.

``observe(account, policy)`` returns the first breaker over its limit (daily, then weekly,
then monthly; a breaker tripping for the first time in its period wins over one that had
already tripped), or None. Loss % = (start - equity) / start x 100; a breaker trips when the
loss reaches its limit. The trip names its target trading state (``circuit_breakers.action``).
Each breaker trips once per period: ``BreakerTrip.first`` is True only on the observation that
first found it over the limit, and that is recorded in the file, so an operator's unlock is not
undone by the next reconcile, nor by a restart, until the period rolls over.

The caller (the pipeline, after each reconcile) moves the gateway to ``trip.target`` when
``trip.first`` is true and the current state is less restrictive, with ``trip.message`` as the
reason. This module does no trading and imports nothing outside the core.

A file that cannot be read is treated as empty (every period starts again at the next
observation) and the reason is kept in ``load_error`` for the caller to report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ..home import write_public
from ..model import Account, TradingState, utcnow
from ..policy.schema import Policy

HUNDRED = Decimal(100)
FILE_VERSION = 1

# (period, policy field under circuit_breakers, code), in the order they are reported.
BREAKERS: tuple[tuple[str, str, str], ...] = (
    ("day", "daily_loss_pct", "daily_loss_limit"),
    ("week", "weekly_loss_pct", "weekly_loss_limit"),
    ("month", "monthly_loss_pct", "monthly_loss_limit"),
)

_TARGETS = {"reduce_only": TradingState.REDUCE_ONLY, "locked": TradingState.LOCKED}


def period_keys(now: datetime) -> dict[str, str]:
    """The UTC day, ISO week and month ``now`` falls in: ``2026-11-21``, ``2026-W47``, ``2026-11``."""
    utc = now.astimezone(timezone.utc)
    year, week, _ = utc.isocalendar()
    return {"day": utc.date().isoformat(), "week": f"{year}-W{week:02d}", "month": f"{utc.year}-{utc.month:02d}"}


@dataclass(frozen=True, slots=True)
class PeriodStart:
    """One period's starting equity, as persisted."""

    key: str
    equity: Decimal
    started_at: datetime
    tripped_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "start_equity": str(self.equity),
            "started_at": self.started_at.isoformat(),
            "tripped_at": self.tripped_at.isoformat() if self.tripped_at else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PeriodStart:
        equity = Decimal(str(raw["start_equity"]))
        if not equity.is_finite() or equity <= 0:
            raise ValueError("start_equity must be a positive number")
        tripped = raw.get("tripped_at")
        return cls(
            key=str(raw["key"]),
            equity=equity,
            started_at=datetime.fromisoformat(raw["started_at"]),
            tripped_at=datetime.fromisoformat(tripped) if tripped else None,
        )


@dataclass(frozen=True, slots=True)
class BreakerTrip:
    """A breaker over its limit."""

    code: str  # daily_loss_limit | weekly_loss_limit | monthly_loss_limit
    period: str  # day | week | month
    period_key: str  # 2026-11-21 | 2026-W47 | 2026-11
    start_equity: Decimal
    equity: Decimal
    loss_pct: Decimal
    limit: Decimal
    target: TradingState
    first: bool  # True only on the observation that first found it over the limit this period
    message: str


class LossBreakers:
    def __init__(self, path: Path, *, now: Callable[[], datetime] = utcnow):
        self.path = Path(path)
        self._now = now
        self.load_error: str | None = None
        self._periods: dict[str, PeriodStart] = self._load()

    # -- reading ---------------------------------------------------------------------------

    def periods(self) -> dict[str, PeriodStart]:
        """The current starting equity of each period seen so far (for status displays)."""
        return dict(self._periods)

    # -- the check -------------------------------------------------------------------------

    def observe(self, account: Account, policy: Any) -> BreakerTrip | None:
        """Record new periods' starting equity and return the first tripped breaker, if any.
        ``policy`` is a ``Policy`` or anything with a ``.policy`` (a loaded policy)."""
        rules = _policy(policy).circuit_breakers
        equity = account.equity
        if not isinstance(equity, Decimal) or not equity.is_finite():
            return None
        now = self._now().astimezone(timezone.utc)
        keys = period_keys(now)
        changed = False
        for period, key in keys.items():
            current = self._periods.get(period)
            if current is not None and current.key == key:
                continue
            start = equity
            if period == "day" and account.last_equity.is_finite() and account.last_equity > 0:
                start = account.last_equity
            if start > 0:
                self._periods[period] = PeriodStart(key, start, now)
                changed = True

        target = _TARGETS[rules.action]
        tripped: list[BreakerTrip] = []
        for period, field, code in BREAKERS:
            rail = getattr(rules, field)
            start = self._periods.get(period)
            if not rail.active or start is None or start.key != keys[period]:
                continue
            loss = (start.equity - equity) / start.equity * HUNDRED
            if loss < rail.limit:
                continue
            first = start.tripped_at is None
            if first:
                self._periods[period] = PeriodStart(start.key, start.equity, start.started_at, now)
                changed = True
            shown = loss.quantize(Decimal("0.01"))
            tripped.append(
                BreakerTrip(
                    code=code,
                    period=period,
                    period_key=start.key,
                    start_equity=start.equity,
                    equity=equity,
                    loss_pct=loss,
                    limit=rail.limit,
                    target=target,
                    first=first,
                    message=(
                        f"{code}: equity {equity} is {shown}% below the {period}'s starting equity "
                        f"{start.equity} ({start.key}), limit {rail.limit}% (circuit_breakers.{field}); "
                        f"trading goes {target.value}"
                    ),
                )
            )
        if changed:
            self._save()
        if not tripped:
            return None
        return next((t for t in tripped if t.first), tripped[0])

    # -- persistence -----------------------------------------------------------------------

    def _load(self) -> dict[str, PeriodStart]:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.load_error = f"{self.path.name} is unreadable ({type(exc).__name__}); periods start again"
            return {}
        try:
            if not isinstance(raw, dict) or raw.get("version") != FILE_VERSION:
                raise ValueError("unknown file version")
            periods = raw.get("periods") or {}
            return {
                period: PeriodStart.from_json(periods[period])
                for period, _, _ in BREAKERS
                if isinstance(periods.get(period), dict)
            }
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            self.load_error = f"{self.path.name} is unreadable ({exc}); periods start again"
            return {}

    def _save(self) -> None:
        document = {"version": FILE_VERSION, "periods": {p: s.to_json() for p, s in self._periods.items()}}
        write_public(self.path, json.dumps(document, indent=2).encode() + b"\n")


def _policy(policy: Any) -> Policy:
    return policy if isinstance(policy, Policy) else policy.policy
