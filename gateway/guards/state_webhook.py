"""Calls an operator's webhook on every trading-state change, whoever made it (the CLI may
change the state file directly). Best effort: a failing webhook is logged, never blocks."""

from __future__ import annotations

import asyncio
import logging

from typing import Annotated

import aiohttp
from pydantic import StringConstraints

from ..control.state import TradingControl
from .options import Option

log = logging.getLogger("gateway.webhook")


class StateWebhook:
    OPTIONS = (
        Option(
            "webhook_url",
            Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)] | None,
            None,
            "POST every trading-state change here (JSON); off when unset",
        ),
    )

    def __init__(self, url: str, control: TradingControl, gateway_id: str, *, poll_s: float = 0.25, timeout_s: float = 5.0):
        self.url = url
        self.control = control
        self.gateway_id = gateway_id
        self.poll_s = poll_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def run(self) -> None:
        last = self.control.current
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            while True:
                await asyncio.sleep(self.poll_s)
                current = self.control.current
                if (current.state, current.since) == (last.state, last.since):
                    continue
                body = {"gateway_id": self.gateway_id, "from": last.state.value, **current.to_json()}
                last = current
                try:
                    async with session.post(self.url, json=body, allow_redirects=False) as resp:
                        if resp.status >= 300:
                            log.warning("state webhook answered %s", resp.status)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    log.warning("state webhook failed: %s", type(exc).__name__)
