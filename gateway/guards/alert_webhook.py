"""Alerts an operator must see at once (a position the gateway could not protect) go to the same
webhook as trading-state changes. Best effort and never blocking: the audit record is the
durable account; this is the page that wakes someone up."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

log = logging.getLogger("gateway.webhook")


class AlertWebhook:
    def __init__(self, url: str | None, gateway_id: str, *, timeout_s: float = 5.0):
        self.url = url
        self.gateway_id = gateway_id
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tasks: set[asyncio.Task] = set()

    def __call__(self, kind: str, data: dict) -> None:
        log.warning("alert %s: %s", kind, data.get("symbol", ""))
        if self.url is None:
            return
        body = {"gateway_id": self.gateway_id, "alert": kind, **json.loads(json.dumps(data, default=str))}
        task = asyncio.get_running_loop().create_task(self._post(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, body: dict) -> None:
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                async with session.post(self.url, json=body, allow_redirects=False) as resp:
                    if resp.status >= 300:
                        log.warning("alert webhook answered %s", resp.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("alert webhook failed: %s", type(exc).__name__)
