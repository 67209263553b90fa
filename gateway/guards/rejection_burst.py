"""A burst of rejections from one credential suspends it: a bot stuck in a loop of refused
orders is broken, and its next orders should not even be considered. Cancels still pass.
Suspension lasts until an operator lifts it (`gatewayctl keys unsuspend`) or the gateway
restarts."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import Forbidden
from ..model import Caller, Decision
from .base import Guard
from .options import Option


class RejectionBurstOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    count: int = Field(20, ge=1, description="rejected orders that suspend a credential")
    window_s: float = Field(60.0, gt=0, description="within this many seconds")


# Refusals that only reflect the gateway's own state (a lockdown, reduce-only): counting them
# would suspend every bot during a lockdown and keep them suspended after the unlock.
_STATE_CODES = frozenset({"trading_locked", "reduce_only"})
# Refusals because the venue is unreachable (no fresh account, no price, leverage not
# confirmable). A decision touched by one says nothing about the bot, whatever else it names:
# its other codes were judged on stale data. Counting them would suspend every bot that retries
# through an outage, and the suspension would outlast it.
_VENUE_DOWN_CODES = frozenset({"stale_account", "no_reference_price", "leverage_unverified"})


class RejectionBurst(Guard):
    OPTIONS = (
        Option(
            "rejection_burst",
            RejectionBurstOptions | Literal["off"],
            RejectionBurstOptions(),
            'suspend a credential after {"count": N, "window_s": S} rejections; on by default, "off" to disable',
        ),
    )

    @classmethod
    def from_options(
        cls, value: RejectionBurstOptions | Literal["off"], on_suspend: Callable[[str, str], None]
    ) -> "RejectionBurst | None":
        if value == "off":
            return None
        return cls(count=value.count, window_s=value.window_s, on_suspend=on_suspend)

    def __init__(
        self,
        *,
        count: int = 20,
        window_s: float = 60.0,
        on_suspend: Callable[[str, str], None] = lambda key_id, reason: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.count = count
        self.window_s = window_s
        self.on_suspend = on_suspend
        self.clock = clock
        self._rejections: dict[str, deque[float]] = {}
        self.suspended: dict[str, str] = {}

    def check(self, caller: Caller) -> None:
        reason = self.suspended.get(caller.key_id)
        if reason is not None:
            raise Forbidden(f"credential suspended: {reason}; an operator must lift it")

    def decided(self, caller: Caller, decision: Decision) -> None:
        codes = set(decision.codes)
        if decision.allowed or codes <= _STATE_CODES or codes & _VENUE_DOWN_CODES:
            return
        now = self.clock()
        window = self._rejections.setdefault(caller.key_id, deque())
        window.append(now)
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if len(window) >= self.count and caller.key_id not in self.suspended:
            reason = f"{len(window)} rejected orders within {self.window_s:g}s"
            self.suspended[caller.key_id] = reason
            self._rejections.pop(caller.key_id, None)
            self.on_suspend(caller.key_id, reason)

    def lift(self, key_id: str) -> bool:
        return self.suspended.pop(key_id, None) is not None

    def restore_suspensions(self, suspended: dict[str, str]) -> None:
        """Suspensions survive a restart: the journal (audit log) remembers the ones not lifted."""
        for key_id, reason in suspended.items():
            self.suspended.setdefault(key_id, f"{reason} (before a restart)")
