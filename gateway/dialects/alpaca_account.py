"""The Alpaca trading API's calls bots make at startup or for reporting, besides orders and
positions: assets (list, by id, aliases such as ``BTCUSD``), calendar, account configurations,
activities, portfolio history, watchlists, option contracts, corporate-action announcements.
Routes on the ``/v2`` trading app (``add_routes``), served through the backend's
``AccountService`` (the venue's ``AccountReads``, with the writes judged and audited).

Refused by design: loosening an account configuration that is a broker protection (403, the
message names the field), and exercising an option (403: it opens a stock position, an entry the
order path must judge; not wired yet).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from ..errors import Forbidden, InvalidRequest, NotFound
from ..model import utcnow
from ..wire import alpaca as wire
from ..wire import alpaca_account as account_wire
from . import alpaca as dialect
from . import plumbing


def _json(body) -> web.Response:
    """JSON whose numbers may be Decimals (a broker's answer passed on keeps its digits)."""
    return plumbing.exact_json_response(body)


def _backend(request: web.Request):
    return request.config_dict[dialect.BACKEND]


def _service(request: web.Request):
    return _backend(request).account()


def _caller(request: web.Request):
    return dialect.caller_of(request)


def _query(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    return dialect._query(request, allowed)


async def _body(request: web.Request) -> dict:
    return await dialect.read_json_object(request, request.config_dict[dialect.MAX_BODY_BYTES])


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# Assets


async def list_assets(request: web.Request) -> web.Response:
    params = _query(request, account_wire.ASSET_PARAMS)
    asset_class = account_wire.parse_asset_class(params.get("asset_class"))
    status = (params.get("status") or "").lower()
    if status not in ("", "active", "inactive"):
        raise InvalidRequest("status must be active or inactive")
    assets = await _service(request).list_assets(asset_class)
    exchange = params.get("exchange")
    rows = [
        wire.asset_to_wire(a)
        for a in assets
        if (not status or a.status == status) and (not exchange or a.exchange == exchange)
    ]
    return _json(rows)


async def get_asset(request: web.Request) -> web.Response:
    """By symbol, by the id every answer uses for it, or by an alias (``BTCUSD`` is ``BTC/USD``)."""
    raw = request.match_info["symbol"]
    backend, caller = _backend(request), _caller(request)
    if _is_uuid(raw):
        asset_id = str(uuid.UUID(raw))
        for asset in await _service(request).list_assets(None):
            if wire.asset_id_for(asset.symbol) == asset_id:
                return _json(wire.asset_to_wire(asset))
        raise NotFound("asset not found")
    wire.parse_symbol(raw, "symbol")  # the shape check, with its message
    for symbol in account_wire.alias_candidates(raw):
        try:
            return _json(wire.asset_to_wire(await backend.get_asset(caller, symbol)))
        except NotFound:
            continue
    raise NotFound(f"asset not found: {raw.strip().upper()[:32]}")


# ---------------------------------------------------------------------------------------
# Calendar, configurations, activities, portfolio history


async def get_calendar(request: web.Request) -> web.Response:
    params = _query(request, frozenset({"start", "end", "date_type"}))
    start, end = account_wire.parse_calendar_range(params, utcnow().date())
    days = await _service(request).calendar(start, end)
    return _json([account_wire.calendar_to_wire(d) for d in days])


async def get_configurations(request: web.Request) -> web.Response:
    _query(request, frozenset())
    return _json(await _service(request).account_configurations())


async def patch_configurations(request: web.Request) -> web.Response:
    changes = account_wire.parse_configuration_changes(await _body(request))
    return _json(await _service(request).update_account_configurations(_caller(request), changes))


async def get_activities(request: web.Request) -> web.Response:
    params = _query(request, account_wire.ACTIVITY_PARAMS)
    if "activity_type" in request.match_info:
        params["activity_types"] = request.match_info["activity_type"]
    return _json(await _service(request).account_activities(params))


async def get_portfolio_history(request: web.Request) -> web.Response:
    params = _query(request, account_wire.HISTORY_PARAMS)
    return _json(await _service(request).portfolio_history(params))


# ---------------------------------------------------------------------------------------
# Watchlists


def _watchlist_id(request: web.Request) -> str:
    raw = request.match_info["watchlist_id"]
    if not _is_uuid(raw):
        raise NotFound("watchlist not found")
    return str(uuid.UUID(raw))


async def _render_watchlist(request: web.Request, watchlist) -> dict:
    backend, caller = _backend(request), _caller(request)
    account = await backend.get_account(caller)
    assets = []
    for symbol in watchlist.symbols:
        try:
            assets.append(await backend.get_asset(caller, symbol))
        except NotFound:
            continue  # delisted since it was added
    return account_wire.watchlist_to_wire(watchlist, account.id, assets)


async def list_watchlists(request: web.Request) -> web.Response:
    watchlists = await _service(request).list_watchlists()
    return _json([await _render_watchlist(request, w) for w in watchlists])


async def create_watchlist(request: web.Request) -> web.Response:
    name, symbols = account_wire.parse_watchlist_body(await _body(request), partial=False)
    watchlist = await _service(request).create_watchlist(_caller(request), name, symbols or [])
    return _json(await _render_watchlist(request, watchlist))


async def get_watchlist(request: web.Request) -> web.Response:
    watchlist = await _service(request).get_watchlist(_watchlist_id(request))
    return _json(await _render_watchlist(request, watchlist))


async def update_watchlist(request: web.Request) -> web.Response:
    watchlist_id = _watchlist_id(request)
    name, symbols = account_wire.parse_watchlist_body(await _body(request), partial=True)
    watchlist = await _service(request).update_watchlist(_caller(request), watchlist_id, name, symbols)
    return _json(await _render_watchlist(request, watchlist))


async def add_to_watchlist(request: web.Request) -> web.Response:
    watchlist_id = _watchlist_id(request)
    body = await _body(request)
    wire.refuse_unknown(body, frozenset({"symbol"}))
    symbol, _ = wire.parse_symbol(body.get("symbol"), "symbol")
    service = _service(request)
    old = await service.get_watchlist(watchlist_id)
    watchlist = await service.update_watchlist(_caller(request), watchlist_id, None, [*old.symbols, symbol])
    return _json(await _render_watchlist(request, watchlist))


async def remove_from_watchlist(request: web.Request) -> web.Response:
    watchlist_id = _watchlist_id(request)
    symbol, _ = wire.parse_symbol(request.match_info["symbol"], "symbol")
    service = _service(request)
    old = await service.get_watchlist(watchlist_id)
    if symbol not in old.symbols:
        raise NotFound(f"{symbol} is not in the watchlist")
    kept = [s for s in old.symbols if s != symbol]
    watchlist = await service.update_watchlist(_caller(request), watchlist_id, None, kept)
    return _json(await _render_watchlist(request, watchlist))


async def delete_watchlist(request: web.Request) -> web.Response:
    await _service(request).delete_watchlist(_caller(request), _watchlist_id(request))
    return web.Response(status=204)


# ---------------------------------------------------------------------------------------
# Option contracts, corporate actions, exercise


async def list_option_contracts(request: web.Request) -> web.Response:
    params = _query(request, account_wire.CONTRACT_PARAMS)
    if "limit" in params and (not params["limit"].isdigit() or not 1 <= int(params["limit"]) <= 10000):
        raise InvalidRequest("limit must be an integer between 1 and 10000")
    for name in ("expiration_date", "expiration_date_gte", "expiration_date_lte"):
        account_wire.parse_date(params.get(name), name)
    return _json(await _service(request).option_contracts(params))


async def get_option_contract(request: web.Request) -> web.Response:
    raw = request.match_info["symbol_or_id"]
    if not _is_uuid(raw):
        raw = wire.parse_symbol(raw, "symbol_or_id")[0]
    return _json(await _service(request).option_contract(raw))


async def list_announcements(request: web.Request) -> web.Response:
    params = _query(request, account_wire.ANNOUNCEMENT_PARAMS)
    account_wire.parse_announcement_range(params)
    return _json(await _service(request).corporate_announcements(params))


async def get_announcement(request: web.Request) -> web.Response:
    raw = request.match_info["announcement_id"]
    if not _is_uuid(raw):
        raise NotFound("announcement not found")
    announcements = await _service(request).corporate_announcements({"id": str(uuid.UUID(raw))})
    for item in announcements:
        if item.get("id") == str(uuid.UUID(raw)):
            return _json(item)
    raise NotFound("announcement not found")


async def exercise(request: web.Request) -> web.Response:
    raise Forbidden(
        "exercising options through the gateway is refused for now: an exercise opens a stock position, "
        "an entry the gateway's order path must judge first"
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """Routes relative to ``/v2`` (``/assets/{symbol}`` is registered with the trading routes)."""
    router.add_get("/assets", list_assets)
    router.add_get("/calendar", get_calendar)
    router.add_get("/account/configurations", get_configurations)
    router.add_patch("/account/configurations", patch_configurations)
    router.add_get("/account/activities", get_activities)
    router.add_get("/account/activities/{activity_type}", get_activities)
    router.add_get("/account/portfolio/history", get_portfolio_history)
    router.add_get("/watchlists", list_watchlists)
    router.add_post("/watchlists", create_watchlist)
    router.add_get("/watchlists/{watchlist_id}", get_watchlist)
    router.add_put("/watchlists/{watchlist_id}", update_watchlist)
    router.add_post("/watchlists/{watchlist_id}", add_to_watchlist)
    router.add_delete("/watchlists/{watchlist_id}", delete_watchlist)
    router.add_delete("/watchlists/{watchlist_id}/{symbol:.+}", remove_from_watchlist)
    router.add_get("/options/contracts", list_option_contracts)
    router.add_get("/options/contracts/{symbol_or_id}", get_option_contract)
    router.add_get("/corporate_actions/announcements", list_announcements)
    router.add_get("/corporate_actions/announcements/{announcement_id}", get_announcement)
    router.add_post("/positions/{symbol:.+}/exercise", exercise)

