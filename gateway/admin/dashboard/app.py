"""The dashboard's routes, mounted at ``/dashboard`` on the operator plane's TCP listener.

    GET  /dashboard                 the page after login, the login form before
    POST /dashboard/login           form field ``token`` (the operator token) -> session cookie
    POST /dashboard/logout          (CSRF)
    GET  /dashboard/static/{file}   the page's own CSS and JS (no account data)
    GET  /dashboard/api/...         JSON for the page (session required)
    GET  /dashboard/api/events      server-sent events: "change" whenever the ledger or the log moved
    POST /dashboard/api/lockdown|unlock|verify   (session and CSRF header required)

Every answer carries a strict Content-Security-Policy and is never cached; the Host header must
name the listener itself (no DNS rebinding). ``source`` is the data: the in-process
``DashboardService`` or, for `gatewayctl dashboard`, a client of the operator unix socket.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
from importlib.resources import files
from typing import Any

import orjson
from aiohttp import web

from .session import COOKIE, CSRF_HEADER, Session, Sessions

SOURCE: web.AppKey[Any] = web.AppKey("dashboard_source")
SESSIONS: web.AppKey[Sessions] = web.AppKey("dashboard_sessions")
SESSION_KEY = "dashboard_session"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
STATIC = {"app.js": "application/javascript", "style.css": "text/css"}
EVENT_KEEPALIVE_S = 15.0
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _asset(name: str) -> bytes:
    return files(__package__).joinpath("static", name).read_bytes()


async def _result(value):
    return await value if inspect.isawaitable(value) else value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), status=status, content_type="application/json")


def _host_ok(request: web.Request) -> bool:
    """The Host header names this listener: its own address, or a loopback name when it listens
    on loopback. A page on another origin that rebinds its name to us fails here."""
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not sock or not isinstance(sock, tuple):
        return True  # a unix socket: the file system decided who connects
    bound_host, bound_port = sock[0], sock[1]
    host = request.headers.get("Host", "")
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit() or int(port) != bound_port:
        return False
    name = name.strip("[]")
    try:
        loopback = ipaddress.ip_address(bound_host).is_loopback
    except ValueError:
        loopback = False
    return name == bound_host or (loopback and name in _LOOPBACK_NAMES | {"127.0.0.1"})


@web.middleware
async def _guard(request: web.Request, handler) -> web.StreamResponse:
    if not _host_ok(request):
        return web.Response(status=421, text="wrong Host for this listener")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = _json({"error": exc.reason}, exc.status)
        else:
            response = web.Response(status=exc.status, headers=exc.headers)
    except ValueError as exc:
        response = _json({"error": str(exc)}, 400)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _session(request: web.Request) -> Session | None:
    return request.app[SESSIONS].get(request.cookies.get(COOKIE))


def _require(request: web.Request, *, csrf: bool = False) -> Session:
    session = _session(request)
    if session is None:
        raise web.HTTPUnauthorized(reason="log in first")
    if csrf and not Sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise web.HTTPForbidden(reason="missing or wrong CSRF token")
    return session


def _html(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8")


async def page(request: web.Request) -> web.Response:
    if _session(request) is None:
        return _html(_asset("login.html"))
    return _html(_asset("index.html"))


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound(reason="no such file")
    return web.Response(body=_asset(name), content_type=STATIC[name])


async def login(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin not in (None, "null") and origin.split("://", 1)[-1] != request.headers.get("Host"):
        raise web.HTTPForbidden(reason="cross-origin login refused")
    form = await request.post()
    session = request.app[SESSIONS].login(str(form.get("token", "")))
    if session is None:
        return _html(_asset("login.html").replace(b"<!--error-->", b'<p class="error" role="alert">Wrong token.</p>'), 401)
    response = web.Response(status=303, headers={"Location": "/dashboard"})
    response.set_cookie(
        COOKIE, session.id, max_age=int(request.app[SESSIONS].ttl_s), path="/dashboard",
        httponly=True, samesite="Strict", secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    session = _require(request, csrf=True)
    request.app[SESSIONS].logout(session.id)
    response = _json({"logged_out": True})
    response.del_cookie(COOKIE, path="/dashboard")
    return response


async def session_info(request: web.Request) -> web.Response:
    session = _require(request)
    return _json({"csrf": session.csrf})


def _int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name, str(default))
    if not raw.isdigit():
        raise ValueError(f"{name} must be a non-negative integer")
    return min(int(raw), maximum)


async def overview(request: web.Request) -> web.Response:
    _require(request)
    return _json(await _result(request.app[SOURCE].overview()))


async def orders(request: web.Request) -> web.Response:
    _require(request)
    offset, limit = _int(request, "offset", 0, 10**9), _int(request, "limit", 50, 500)
    return _json(await _result(request.app[SOURCE].orders(offset, limit)))


async def decisions(request: web.Request) -> web.Response:
    _require(request)
    q = request.query
    offset, limit = _int(request, "offset", 0, 10**9), _int(request, "limit", 50, 500)
    return _json(await _result(request.app[SOURCE].decisions(q.get("bot") or None, q.get("code") or None, offset, limit)))


async def chart(request: web.Request) -> web.Response:
    _require(request)
    name = request.match_info["name"]
    charts = await _result(request.app[SOURCE].charts())
    if name not in charts:
        raise web.HTTPNotFound(reason="no such chart")
    return web.Response(text=charts[name], content_type="image/svg+xml")


async def _action_body(request: web.Request) -> dict:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise ValueError("body must be JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


async def lockdown(request: web.Request) -> web.Response:
    _require(request, csrf=True)
    body = await _action_body(request)
    allowed = {"reason": str(body.get("reason", "")), "actor": "dashboard"}
    for flag in ("reduce_only", "cancel_open", "flatten"):
        allowed[flag] = bool(body.get(flag))
    if not allowed["reason"].strip():
        raise ValueError("a reason is required")
    return _json(await _result(request.app[SOURCE].lockdown(allowed)))


async def unlock(request: web.Request) -> web.Response:
    _require(request, csrf=True)
    body = await _action_body(request)
    reason = str(body.get("reason", ""))
    if not reason.strip():
        raise ValueError("a reason is required")
    return _json(await _result(request.app[SOURCE].unlock({"reason": reason, "actor": "dashboard"})))


async def verify(request: web.Request) -> web.Response:
    _require(request, csrf=True)
    return _json(await _result(request.app[SOURCE].verify()))


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one "change" (with the trading state) whenever anything moved; the
    page then fetches what it shows. Ends when the session does."""
    session = _require(request)
    source = request.app[SOURCE]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store", "Content-Security-Policy": CSP,
    })
    await response.prepare(request)
    seen = -1
    sessions = request.app[SESSIONS]
    try:
        while sessions.get(session.id) is not None:
            changes = await _result(source.wait_change(seen, EVENT_KEEPALIVE_S))
            if getattr(source, "closed", False):
                break
            if changes == seen:
                await response.write(b": keep-alive\n\n")
                continue
            seen = changes
            data = orjson.dumps({"changes": changes, "state": await _result(source.state())})
            await response.write(b"event: change\ndata: " + data + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


def dashboard_app(source: Any, token: bytes, *, ttl_s: float | None = None) -> web.Application:
    """The session-protected dashboard; mount with ``app.add_subapp("/dashboard", ...)``."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[_guard])
    app[SOURCE] = source
    app[SESSIONS] = Sessions(token) if ttl_s is None else Sessions(token, ttl_s=ttl_s)
    app.router.add_get("", page)
    app.router.add_get("/", page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/session", session_info)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/orders", orders)
    app.router.add_get("/api/decisions", decisions)
    app.router.add_get("/api/charts/{name}.svg", chart)
    app.router.add_get("/api/events", events)
    app.router.add_post("/api/lockdown", lockdown)
    app.router.add_post("/api/unlock", unlock)
    app.router.add_post("/api/verify", verify)
    return app
