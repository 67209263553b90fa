"""The operator plane of a running gateway, served on an owner-only unix socket.

Who can connect is decided by the file system (the socket is created 0600 in an owner-only
home), so there is no bot credential that reaches it and no TCP port by default.

Routes (JSON in, JSON out):
  GET  /status                  trading state, policy, exposure against each limit
  GET  /metrics                 Prometheus text format
  POST /lockdown                {"reason", "reduce_only", "cancel_open", "flatten", "suspend_at_broker", "actor"}
  POST /unlock                  {"reason", "actor"}  (also lifts a broker-side suspension the gateway set)
  POST /paper/prices            {"SYMBOL": price}  (embedded paper venue only)
  POST /policy/apply            {"path": "/abs/policy.yaml"}: verify, install, switch atomically
  POST /keys/unsuspend          {"key_id"}: lift a rejection-burst suspension
  POST /audit/checkpoint        sign a checkpoint of the audit log now
  /dashboard/api/...            the dashboard's data (unix socket); on TCP, /dashboard is the
                                login-protected page (gateway.admin.dashboard)
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..control import broker_suspension
from ..errors import GatewayError
from ..model import TradingState
from ..numbers import MAX_PRICE, fmt, parse_decimal

if TYPE_CHECKING:
    from ..server import Gateway

GATEWAY_KEY: web.AppKey["Gateway"] = web.AppKey("gateway")


def admin_app(gateway: "Gateway", *, token: bytes | None = None) -> web.Application:
    """The operator API. On the unix socket the file system decides who connects; on TCP
    (``token`` given) every request needs ``Authorization: Bearer <operator token>``."""
    middlewares = [_errors] if token is None else [_require_token(token), _errors]
    app = web.Application(client_max_size=64 * 1024, middlewares=middlewares)
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/lockdown", lockdown)
    app.router.add_post("/unlock", unlock)
    app.router.add_post("/paper/prices", paper_prices)
    app.router.add_post("/policy/apply", policy_apply)
    app.router.add_post("/keys/unsuspend", unsuspend)
    app.router.add_post("/audit/checkpoint", audit_checkpoint)
    dashboard = getattr(gateway, "dashboard", None)
    if dashboard is not None:
        if token is None:
            from .dashboard.unix import mount_unix

            mount_unix(app, dashboard)
        else:
            from .dashboard.app import dashboard_app

            app.add_subapp("/dashboard", dashboard_app(dashboard, token))
    return app


def _require_token(token: bytes):
    import hmac

    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        if request.path == "/dashboard" or request.path.startswith("/dashboard/"):
            return await handler(request)  # the dashboard's own login and session (dashboard.app)
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
        if not presented or not hmac.compare_digest(presented, token):
            return _json({"error": "operator token required"}, 401)
        return await handler(request)

    return check


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), status=status, content_type="application/json")


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _json({"error": exc.reason}, exc.status)
    except (ValueError, GatewayError) as exc:
        return _json({"error": str(exc)}, 400)


async def _body(request: web.Request) -> dict:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise ValueError("body must be JSON") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def ledger_status(pipeline) -> dict:
    """The ledger's health: what it tracks, whether the venue's stream is up, last reconcile."""
    ledger = pipeline.ledger
    return {
        "open_orders": len(ledger.open_orders()),
        "uncertain": len(ledger.uncertain_orders()),
        "stream": "up" if ledger.stream_live else ("down" if pipeline.streaming else "none"),
        "reconciles": pipeline.reconciler.runs,
    }


def status_snapshot(gateway: "Gateway") -> dict:
    """Everything `gatewayctl status` shows, from the running gateway's own book."""
    state = gateway.control.current
    policy = gateway.active_policy
    portfolio = gateway.portfolio
    equity = portfolio.equity
    rails = policy.policy.rails()

    def against(name: str, value: Decimal | None) -> dict:
        rail = rails[name]
        return {"value": fmt(value) if value is not None else None, "limit": fmt(rail.limit) if rail.active else "off"}

    pct = (lambda amount: amount / equity * 100) if equity > 0 else (lambda amount: None)
    return {
        "state": state.to_json(),
        "policy": {"version": policy.version, "sha256": policy.sha256, "expires": policy.policy.expires.isoformat()},
        "venue": gateway.options.venue,
        "equity": fmt(equity),
        "exposure": {
            "account.max_exposure_pct": against("account.max_exposure_pct", pct(portfolio.committed)),
            "account.max_leverage": against(
                "account.max_leverage", portfolio.gross_notional / equity if equity > 0 else None
            ),
            "account.max_position_pct": against(
                "account.max_position_pct",
                max((pct(b.worst_notional() / b.leverage) for b in portfolio.books.values()), default=Decimal(0))
                if equity > 0
                else None,
            ),
        },
        "open_positions": portfolio.open_positions,
        "ledger": ledger_status(gateway.pipeline),
        "upstream_budget": gateway.pipeline.budget.snapshot(),
        "last_reconcile_error": gateway.pipeline.last_reconcile_error,
        "audit": {"seq": gateway.audit.seq, "broken": gateway.audit.broken},
        "broker_kill_switch": broker_kill_switch(gateway),
    }


def broker_kill_switch(gateway: "Gateway") -> dict:
    """What the broker itself will do: the exchange's countdown per traded symbol (Binance) and
    whether the gateway set the account's suspend_trade (Alpaca)."""
    countdown = gateway.broker_countdown
    return {
        "countdown": countdown.status() if countdown is not None else None,
        "suspend_trade": broker_suspension.read_record(gateway.home.root).to_json(),
    }


async def metrics(request: web.Request) -> web.Response:
    from .metrics import CONTENT_TYPE

    body = request.app[GATEWAY_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def status(request: web.Request) -> web.Response:
    return _json(status_snapshot(request.app[GATEWAY_KEY]))


async def lockdown(request: web.Request) -> web.Response:
    return _json(await apply_lockdown(request.app[GATEWAY_KEY], await _body(request)))


async def apply_lockdown(gateway: "Gateway", body: dict) -> dict:
    """Lock down (or reduce-only), optionally cancel open orders and flatten: the one code path
    for the CLI, the socket and the dashboard."""
    reason = str(body.get("reason", "")).strip()
    if not reason:
        raise ValueError("a reason is required")
    target = TradingState.REDUCE_ONLY if body.get("reduce_only") else TradingState.LOCKED
    actor = str(body.get("actor", "operator"))
    previous, record = gateway.control.set(target, reason, actor)
    # Nothing is forwarded after this point (the pipeline re-checks the state after its audit
    # write); wait for orders already on their way so the answer below is the final word.
    drained = await gateway.pipeline.drain()
    # Stopping risk comes first: cancel and flatten run even when the audit log is down (the
    # gateway is locked then anyway), and the records follow where they can be written.
    result: dict[str, Any] = {"state": record.to_json(), "drained_in_flight": drained}
    records = [("control.lockdown", {"from": previous.state.value, "to": target.value, "reason": reason,
                                     "actor": actor, "drained": drained})]
    if body.get("cancel_open") or body.get("flatten"):
        canceled = await gateway.venue.cancel_all_orders()
        result["canceled"] = [r.id for r in canceled]
        records.append(("control.cancel_open", {"actor": actor, "orders": result["canceled"]}))
    if body.get("flatten"):
        closed = await gateway.venue.close_all_positions(cancel_orders=True)
        result["flattened"] = [r.id for r in closed]
        records.append(("control.flatten", {"actor": actor, "symbols": result["flattened"]}))
    if body.get("suspend_at_broker") or gateway.config.lockdown_suspend_at_broker:
        # Last: a flatten above needs the broker to accept its closing orders.
        try:
            await broker_suspension.suspend(gateway.venue, gateway.home.root, reason, actor)
            result["suspend_at_broker"] = "set"
        except GatewayError as exc:
            result["suspend_at_broker"] = f"not set: {broker_suspension.describe(exc)}"
        records.append(("control.suspend_at_broker", {"actor": actor, "result": result["suspend_at_broker"]}))
    for type_, data in records:
        try:
            await gateway.audit.append(type_, data)
        except GatewayError:
            result["audit"] = "unavailable: these actions could not be recorded"
    gateway.pipeline.reconciler.soon()
    return result


async def unlock(request: web.Request) -> web.Response:
    return _json(await apply_unlock(request.app[GATEWAY_KEY], await _body(request)))


async def apply_unlock(gateway: "Gateway", body: dict) -> dict:
    reason = str(body.get("reason", "")).strip()
    if not reason:
        raise ValueError("a reason is required")
    actor = str(body.get("actor", "operator"))
    previous, record = gateway.control.set(TradingState.ACTIVE, reason, actor)
    result: dict[str, Any] = {"state": record.to_json()}
    try:
        if await broker_suspension.lift(gateway.venue, gateway.home.root):
            result["suspend_at_broker"] = "lifted"
    except GatewayError as exc:
        result["suspend_at_broker"] = f"still set: {broker_suspension.describe(exc)}"
    await gateway.audit.append(
        "control.unlock",
        {"from": previous.state.value, "to": "ACTIVE", "reason": reason, "actor": actor,
         **({"suspend_at_broker": result["suspend_at_broker"]} if "suspend_at_broker" in result else {})},
    )
    return result


async def paper_prices(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    engine = getattr(gateway.venue, "engine", None)
    if engine is None:
        raise web.HTTPNotFound(reason="the venue is not the embedded paper broker")
    body = await _body(request)
    prices = {str(symbol): parse_decimal(value, f"price of {symbol}", maximum=MAX_PRICE) for symbol, value in body.items()}
    engine.set_prices(prices)
    await gateway.pipeline.reconcile()
    return _json({symbol: fmt(price) for symbol, price in prices.items()})


async def policy_apply(request: web.Request) -> web.Response:
    """Install a signed policy and switch to it between two decisions, or refuse and keep the
    active one. The swap is one attribute assignment; each decision reads the policy once."""
    from pathlib import Path

    from ..policy.store import PolicyRefused

    gateway = request.app[GATEWAY_KEY]
    body = await _body(request)
    path = Path(str(body.get("path", "")))
    actor = str(body.get("actor", "operator"))
    if not path.is_absolute():
        raise ValueError("path must be absolute")
    try:
        active = gateway.policy_store.apply(path)
    except PolicyRefused as exc:
        await gateway.audit.append("policy.refused", {"path": str(path), "code": exc.code, "message": exc.message, "actor": actor})
        return _json({"error": f"refused ({exc.code}): {exc.message}", "code": exc.code}, 409)
    previous = gateway.active_policy
    gateway.install_policy(active)
    await gateway.audit.append(
        "policy.apply",
        {"from_version": previous.version, "version": active.version, "sha256": active.sha256,
         "signers": sorted(active.signers), "actor": actor},
    )
    return _json({"version": active.version, "sha256": active.sha256})


async def unsuspend(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    key_id = str((await _body(request)).get("key_id", ""))
    guard = gateway.rejection_burst
    if guard is None or not guard.lift(key_id):
        raise web.HTTPNotFound(reason=f"{key_id} is not suspended")
    await gateway.audit.append("key.unsuspended", {"key_id": key_id, "actor": "operator"})
    return _json({"key_id": key_id, "suspended": False})


async def audit_checkpoint(request: web.Request) -> web.Response:
    checkpoint = await request.app[GATEWAY_KEY].audit.checkpoint()
    if checkpoint is None:
        return _json({"checkpoint": None})
    return _json({"seq": checkpoint.seq, "hash": checkpoint.hash, "key_id": checkpoint.key_id})
