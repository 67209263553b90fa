"""The dashboard's data on the operator unix socket (no login: the socket is owner-only), and a
client of it, so `gatewayctl dashboard` can serve the page when no TCP listener is configured."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiohttp import web

from .service import DashboardService

SERVICE: web.AppKey[DashboardService] = web.AppKey("dashboard_service")
PREFIX = "/dashboard/api"


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), content_type="application/json")


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, str(default))
    if not raw.isdigit():
        raise ValueError(f"{name} must be a non-negative integer")
    return int(raw)


def mount_unix(app: web.Application, service: DashboardService) -> None:
    app[SERVICE] = service

    async def overview(request):
        return _json(service.overview())

    async def state(request):
        return _json(service.state())

    async def orders(request):
        return _json(service.orders(_int(request, "offset", 0), min(_int(request, "limit", 50), 500)))

    async def decisions(request):
        q = request.query
        return _json(service.decisions(
            q.get("bot") or None, q.get("code") or None, _int(request, "offset", 0), min(_int(request, "limit", 50), 500)
        ))

    async def charts(request):
        return _json(service.charts())

    async def wait(request):
        since = int(request.query.get("since", "-1"))
        return _json({"changes": await service.wait_change(since, min(float(request.query.get("timeout", "15")), 30.0))})

    async def verify(request):
        return _json(await service.verify())

    async def where(request):
        return _json({"operator_url": getattr(service.gateway, "operator_url", None)})

    app.router.add_get(PREFIX + "/overview", overview)
    app.router.add_get(PREFIX + "/state", state)
    app.router.add_get(PREFIX + "/orders", orders)
    app.router.add_get(PREFIX + "/decisions", decisions)
    app.router.add_get(PREFIX + "/charts", charts)
    app.router.add_get(PREFIX + "/wait", wait)
    app.router.add_post(PREFIX + "/verify", verify)
    app.router.add_get(PREFIX + "/where", where)


class SocketSource:
    """The dashboard's data from a running gateway's operator socket. Lockdown and unlock use the
    operator API's own routes (``/lockdown``, ``/unlock``), as `gatewayctl lockdown` does."""

    def __init__(self, socket_path: str):
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path))

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
        async with self._session.request(
            method, "http://gateway" + path, data=orjson.dumps(body) if body is not None else None, params=params,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as resp:
            data = orjson.loads(await resp.read())
            if resp.status >= 400:
                raise ValueError(data.get("error", f"operator call failed with {resp.status}"))
            return data

    async def overview(self):
        return await self._call("GET", PREFIX + "/overview")

    async def state(self):
        return await self._call("GET", PREFIX + "/state")

    async def orders(self, offset, limit):
        return await self._call("GET", PREFIX + "/orders", params={"offset": offset, "limit": limit})

    async def decisions(self, bot, code, offset, limit):
        params = {"offset": offset, "limit": limit}
        if bot:
            params["bot"] = bot
        if code:
            params["code"] = code
        return await self._call("GET", PREFIX + "/decisions", params=params)

    async def charts(self):
        return await self._call("GET", PREFIX + "/charts")

    async def wait_change(self, since, timeout_s):
        return (await self._call("GET", PREFIX + "/wait", params={"since": since, "timeout": timeout_s}))["changes"]

    async def lockdown(self, body):
        return await self._call("POST", "/lockdown", body)

    async def unlock(self, body):
        return await self._call("POST", "/unlock", body)

    async def verify(self):
        return await self._call("POST", PREFIX + "/verify", {})
