"""The dashboard's data, read from a running gateway in its own process.

Keeps the decision feed (tailing the audit log) and the equity/exposure samples; answers the
JSON the page asks for. Lockdown and unlock go through the operator API's own functions."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ...audit.verify import verify_log
from ...ledger import Change
from .. import api
from . import views
from .feed import DecisionFeed
from .history import History, equity_svg, exposure_svg

if TYPE_CHECKING:
    from ...server import Gateway

log = logging.getLogger("gateway.admin.dashboard")

POLL_S = 0.25  # how often the audit log is tailed: the feed is at most this much behind
SAMPLE_S = 30.0  # equity / exposure sampled at least this often
SAMPLE_MIN_S = 1.0  # and as often as this while they move


class DashboardService:
    def __init__(self, gateway: "Gateway"):
        self.gateway = gateway
        self.feed = DecisionFeed(gateway.home.audit_log)
        self.history = History()
        self.changes = 0  # bumped by every ledger change and every new audit record
        self._seen_seq = 0
        self._task: asyncio.Task | None = None
        self._waiters: set[asyncio.Event] = set()
        self.closed = False  # set at stop: open event streams end
        gateway.pipeline.ledger.listeners.append(self._on_ledger)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.closed = True
        for event in self._waiters:
            event.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        last_sample, last_values = 0.0, None
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.refresh()
                now = loop.time()
                portfolio = self.gateway.portfolio
                values = (portfolio.equity, portfolio.committed)
                moved = values != last_values and now - last_sample >= SAMPLE_MIN_S
                if portfolio.equity > 0 and (moved or now - last_sample >= SAMPLE_S):
                    last_sample, last_values = now, values
                    self.history.sample(*values)
            except Exception:
                log.exception("dashboard refresh failed")
            await asyncio.sleep(POLL_S)

    def refresh(self) -> None:
        self.feed.poll()
        seq = self.gateway.audit.seq
        if seq != self._seen_seq:
            self._seen_seq = seq
            self._changed()

    def _on_ledger(self, change: Change) -> None:
        self._changed()

    def _changed(self) -> None:
        self.changes += 1
        for event in self._waiters:
            event.set()

    async def wait_change(self, since: int, timeout_s: float) -> int:
        """The change counter once it differs from ``since`` (or after ``timeout_s``)."""
        if self.changes != since:
            return self.changes
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(event)
        return self.changes

    # -- the data --------------------------------------------------------------------------

    def state(self) -> dict:
        return self.gateway.control.current.to_json()

    def overview(self) -> dict:
        g = self.gateway
        self.feed.poll()
        return {
            "state": self.state(),
            "equity": str(g.portfolio.equity),
            "limits": views.limits(g),
            "positions": views.positions(g),
            "bots": views.bots(g, self.feed),
            "pnl": views.pnl(g, self.feed.fills),
            "policy": views.policy_view(g),
            "audit": views.audit_view(g),
            "venue": views.venue_view(g),
            "codes": self.feed.codes(),
            "changes": self.changes,
        }

    def orders(self, offset: int, limit: int) -> dict:
        return views.open_orders(self.gateway, offset, limit)

    def decisions(self, bot: str | None, code: str | None, offset: int, limit: int) -> dict:
        self.feed.poll()
        return self.feed.page(bot=bot, code=code, offset=offset, limit=limit)

    def charts(self) -> dict:
        return {"equity": equity_svg(self.history), "exposure": exposure_svg(self.history)}

    async def lockdown(self, body: dict) -> dict:
        return await api.apply_lockdown(self.gateway, body)

    async def unlock(self, body: dict) -> dict:
        return await api.apply_unlock(self.gateway, body)

    async def verify(self) -> dict:
        from ...audit.checkpoint import load_public_key

        home = self.gateway.home
        public = load_public_key(home.audit_signing_key) if home.audit_signing_key.exists() else None
        result = await asyncio.to_thread(
            verify_log, home.audit_log, checkpoints_path=home.audit_checkpoints, public_key=public
        )
        return {
            "ok": result.ok, "records": result.records, "error": result.error,
            "checkpoints": result.checkpoints, "uncovered": result.uncovered,
        }
