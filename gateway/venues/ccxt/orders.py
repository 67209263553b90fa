"""The ccxt venue's orders: placing (resolved by client order id when the answer is lost), reading,
listing at a bounded cost, canceling, replacing (cancel + new) and closing. Mixed into ``CcxtVenue``;
it relies on the venue's ``_ready``, ``_market``, ``_call``, ``_markets`` and ``_internal``.

Orders have no symbol-less lookup on most exchanges, so the venue remembers each order's symbol
(and whether it is a conditional order, which has its own endpoints) and, for an id it never saw,
searches the open orders. A bot's own oto/bracket legs are emulated by ``venues.emulation``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ...errors import GatewayError, NotFound, OrderRejected, UpstreamUnavailable, UpstreamUncertain
from ...model import (
    AssetClass,
    BulkResult,
    Order,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from ..emulation import ExitLeg
from .codec import TIFS, Garbage, bulk_status, filter_orders, is_conditional, order_args, to_order
from .markets import increment, on_grid, round_to_tick

MAX_REMEMBERED_ORDERS = 20_000
COUNTDOWN_EXCHANGES = frozenset({"binanceusdm"})  # ccxt ids whose futures API has countdownCancelAll
# Open orders without a symbol cost Binance 40 weight (per list, plain and conditional); per
# symbol, 1. Reconciling every few seconds, the venue asks per watched symbol and sweeps every
# symbol (catching orders placed outside the gateway) once a minute.
FULL_SWEEP_S = 60.0


class CcxtOrders:
    """Mixin for ``CcxtVenue``."""

    def _remember(self, order: Order, conditional: bool) -> None:
        if order.status.is_open:
            self._order_symbols.add(order.symbol)
            for meanwhile in self._listings:
                meanwhile.add(order.symbol)
        self._orders[order.id] = (order.symbol, conditional)
        self._orders.move_to_end(order.id)
        self._client_ids[order.client_order_id] = order.id
        self._client_ids.move_to_end(order.client_order_id)
        for book in (self._orders, self._client_ids):
            while len(book) > MAX_REMEMBERED_ORDERS:
                book.popitem(last=False)

    async def submit_order(self, intent: OrderIntent) -> Order:
        exchange = await self._ready()
        market = self._market(intent.symbol)
        self._check_shape(intent)
        client_id = intent.client_order_id or f"gw-{uuid.uuid4().hex}"
        if client_id in self._client_ids:  # a resubmission: the order that already exists
            return await self.get_order(self._client_ids[client_id], nested=True)
        kind, price, params = order_args(intent)
        if client_id in self._uncertain:  # resent after an uncertain answer: it may exist by now
            try:
                return await self._resolve(
                    exchange, market, client_id, is_conditional(params)
                )
            except UpstreamUncertain:
                pass  # still unknown at the exchange: place it (a duplicate client id is refused there)
        order = await self._place(
            exchange, market, intent.symbol, kind, intent.side, intent.qty, price, params, client_id
        )
        if intent.order_class in (OrderClass.OTO, OrderClass.BRACKET):
            order.order_class = intent.order_class
            order.legs = await self.exits.submitted(order, intent)
        return order

    def _check_shape(self, intent: OrderIntent) -> None:
        if intent.qty is None:
            raise OrderRejected(f"notional orders are not supported at {self.exchange_id}; send a quantity")
        if intent.order_class is OrderClass.OCO:
            raise OrderRejected(f"oco orders are not supported at {self.exchange_id}")
        if intent.type is OrderType.TRAILING_STOP and intent.trail_percent is None:
            raise OrderRejected(f"trailing stops at {self.exchange_id} need trail_percent")
        if intent.time_in_force not in TIFS:
            raise OrderRejected(
                f"time_in_force {intent.time_in_force.value} is not supported at {self.exchange_id}; use gtc, ioc or fok"
            )

    async def _place(
        self,
        exchange: Any,
        market: dict,
        symbol: str,
        kind: str,
        side: Side,
        qty: Decimal,
        price: Decimal | None,
        params: dict,
        client_id: str,
    ) -> Order:
        """One order at the exchange, resolved by client order id when the answer is lost."""
        amount = on_grid(exchange, market, qty, "quantity", "LOT_SIZE", exchange.amount_to_precision)
        limit = (
            on_grid(exchange, market, price, "price", "PRICE_FILTER", exchange.price_to_precision) if price else None
        )
        for name in ("triggerPrice", "stopPrice", "takeProfitPrice", "activationPrice"):
            if name in params:
                params[name] = on_grid(
                    exchange, market, params[name], "stop price", "PRICE_FILTER", exchange.price_to_precision
                )
        conditional = is_conditional(params)
        params = {**params, "clientOrderId": client_id}
        try:
            raw = await self._call(
                exchange.create_order, market["symbol"], kind, side.value, amount, limit, params, mutating=True
            )
        except UpstreamUncertain:
            self._uncertain[client_id] = None
            while len(self._uncertain) > MAX_REMEMBERED_ORDERS:
                self._uncertain.popitem(last=False)
            return await self._resolve(exchange, market, client_id, conditional)
        return self._decode_order(raw, conditional, fallback_client_id=client_id, placing=True)

    async def _resolve(self, exchange: Any, market: dict, client_id: str, conditional: bool) -> Order:
        """After an uncertain submit: the order, if the exchange has it by our client id."""
        try:
            raw = await self._call(
                exchange.fetch_order, "", market["symbol"], {"clientOrderId": client_id, "trigger": conditional}
            )
        except NotFound:
            raise UpstreamUncertain(
                f"{self.exchange_id} did not confirm order {client_id} and does not list it yet; "
                "it may or may not be placed: look it up by client order id before sending it again"
            ) from None
        except GatewayError:
            raise UpstreamUncertain(
                f"{self.exchange_id} did not confirm order {client_id}; it may or may not be placed"
            ) from None
        return self._decode_order(raw, conditional, fallback_client_id=client_id, placing=True)

    def _decode_order(
        self, raw: Any, conditional: bool | None, fallback_client_id: str | None = None, *, placing: bool = False
    ) -> Order:
        """An exchange order into the model. An answer that cannot be read is uncertain when it
        answers a placement (the order may exist) and unavailable otherwise."""
        try:
            order, is_conditional = to_order(raw, self._internal, conditional, fallback_client_id)
        except (Garbage, AttributeError, TypeError, KeyError, ValueError) as exc:
            failure = UpstreamUncertain if placing else UpstreamUnavailable
            raise failure(
                f"{self.exchange_id}'s answer for an order could not be read ({type(exc).__name__})"
            ) from None
        self._remember(order, is_conditional)
        return order

    def _decode_listed(self, raws: Any, conditional: bool) -> list[Order]:
        """Listed orders, leaving out those in markets the venue does not trade (another market
        type, a symbol outside the model): the internal model cannot hold them."""
        if not isinstance(raws, list):
            raise UpstreamUnavailable(f"{self.exchange_id}'s order list could not be read")
        return [
            self._decode_order(raw, conditional)
            for raw in raws
            if isinstance(raw, dict) and raw.get("symbol") in self._internal
        ]

    async def _lookup(self, exchange: Any, order_id: str) -> tuple[str, bool]:
        """An order's (symbol, conditional): remembered, or found among the open orders."""
        known = self._orders.get(order_id)
        if known is not None:
            return known
        for order in await self._open_orders(exchange):
            if order.id == order_id:
                return self._orders[order_id]
        raise NotFound(f"order not found: {order_id[:64]}")

    async def get_order(self, order_id: str, nested: bool = False) -> Order:
        exchange = await self._ready()
        symbol, conditional = await self._lookup(exchange, order_id)
        market = self._market(symbol)
        raw = await self._call(exchange.fetch_order, order_id, market["symbol"], {"trigger": conditional})
        order = self._decode_order(raw, conditional)
        if nested:
            order.legs = [await self.get_order(leg) for leg in self.exits.placed_legs(order.id)] or order.legs
        return order

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        exchange = await self._ready()
        order_id = self._client_ids.get(client_order_id)
        if order_id is None:
            for order in await self._open_orders(exchange):
                if order.client_order_id == client_order_id:
                    return order
            raise NotFound("order not found for that client_order_id")
        return await self.get_order(order_id, nested=True)

    async def _open_orders(self, exchange: Any, ccxt_symbol: str | None = None) -> list[Order]:
        plain = await self._call(exchange.fetch_open_orders, ccxt_symbol)
        triggers = await self._call(exchange.fetch_open_orders, ccxt_symbol, None, None, {"trigger": True})
        return self._decode_listed(plain, False) + self._decode_listed(triggers, True)

    async def list_orders(self, query: OrderQuery) -> list[Order]:
        exchange = await self._ready()
        await self.exits.sync()
        if query.status == "open":
            orders = await self._watched_open_orders(exchange, query.symbols)
        else:
            orders = await self._history(exchange, query)
        return filter_orders(orders, query)

    async def _watched_open_orders(self, exchange: Any, symbols: tuple[str, ...]) -> list[Order]:
        """Open orders of ``symbols``; without any, of the symbols with a position or an open order
        (as last seen), or of every symbol when the last full sweep is FULL_SWEEP_S old."""
        loop = asyncio.get_running_loop()
        meanwhile: set[str] = set()  # an order placed while this listing runs must stay watched
        self._listings.append(meanwhile)
        try:
            if not symbols and loop.time() - self._last_sweep >= FULL_SWEEP_S:
                self._last_sweep = loop.time()
                orders = await self._open_orders(exchange)
            else:
                orders = []
                for symbol in sorted(symbols or self._position_symbols | self._order_symbols):
                    if symbol in self._markets:
                        orders += await self._open_orders(exchange, self._markets[symbol]["symbol"])
        finally:
            self._listings.remove(meanwhile)
        if not symbols:
            self._order_symbols = {o.symbol for o in orders if o.status.is_open} | meanwhile
        return orders

    async def _history(self, exchange: Any, query: OrderQuery) -> list[Order]:
        """Closed and open orders of the symbols asked for, else of every symbol the venue has
        seen an order in (exchanges list history per symbol)."""
        symbols = [s for s in query.symbols if s in self._markets] or sorted({s for s, _ in self._orders.values()})
        since = int(query.after.timestamp() * 1000) if query.after else None
        found: dict[str, Order] = {o.id: o for o in await self._open_orders(exchange)}
        for symbol in symbols:
            ccxt_symbol = self._markets[symbol]["symbol"]
            for conditional in (False, True):
                params = {"trigger": True} if conditional else {}
                for order in self._decode_listed(
                    await self._call(exchange.fetch_orders, ccxt_symbol, since, None, params), conditional
                ):
                    found[order.id] = order
        return list(found.values())

    async def cancel_order(self, order_id: str) -> None:
        exchange = await self._ready()
        symbol, conditional = await self._lookup(exchange, order_id)
        market = self._market(symbol)
        await self._call(exchange.cancel_order, order_id, market["symbol"], {"trigger": conditional}, mutating=True)
        self.exits.canceled(order_id)

    async def cancel_all_orders(self) -> list[BulkResult]:
        exchange = await self._ready()
        results = []
        for order in await self._open_orders(exchange):
            try:
                await self.cancel_order(order.id)
                results.append(BulkResult(id=order.id, status=200, order=replace(order, status=OrderStatus.CANCELED)))
            except GatewayError as exc:
                results.append(BulkResult(id=order.id, status=bulk_status(exc), message=exc.message))
        return results

    # The exchange-side dead man's switch (Binance USD-M ``countdownCancelAll``).

    @property
    def has_countdown(self) -> bool:
        """Whether the exchange offers countdownCancelAll (Binance USD-M futures)."""
        return self.exchange_id in COUNTDOWN_EXCHANGES

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        """(Re)arm the exchange's countdown for ``symbol``: unless renewed within
        ``countdown_ms``, the exchange cancels the symbol's open orders; 0 stops it."""
        if not self.has_countdown:
            raise self._not_served("an exchange-side countdown (countdownCancelAll)")
        exchange = await self._ready()
        market = self._market(symbol)
        await self._call(
            exchange.fapiPrivatePostCountdownCancelAll, {"symbol": market["id"], "countdownTime": int(countdown_ms)}
        )

    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        """Cancel, then place the changed order (most exchanges cannot amend a stop). If the new
        order fails, the old one stays canceled: the venue never holds more than was asked."""
        old = await self.get_order(order_id)
        if not old.status.is_open:
            raise OrderRejected("order is not open and cannot be replaced")
        await self.cancel_order(order_id)
        intent = OrderIntent(
            symbol=old.symbol,
            asset_class=old.asset_class,
            side=old.side,
            type=old.type,
            time_in_force=change.time_in_force or old.time_in_force,
            qty=change.qty or ((old.qty or Decimal(0)) - old.filled_qty),
            limit_price=change.limit_price or old.limit_price,
            stop_price=change.stop_price or old.stop_price,
            trail_percent=change.trail or old.trail_percent,
            client_order_id=change.client_order_id,
            post_only=old.post_only,
            profit_trigger=old.profit_trigger,
            close_position=old.close_position,
            reduce_only=old.close_position,
            activation_price=old.activation_price,
        )
        new = await self.submit_order(intent)
        new.replaces = old.id
        return new

    async def close_position(self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None) -> Order:
        position = await self.get_position(symbol)
        size = abs(position.qty)
        if qty is not None and percentage is not None:
            raise OrderRejected("give qty or percentage, not both")
        amount = qty if qty is not None else size * percentage / 100 if percentage is not None else size
        if amount <= 0 or amount > size:
            raise OrderRejected(f"cannot close {amount} of a {size} position")
        await self._ready()
        lot = increment(self._exchange, (self._market(symbol).get("precision") or {}).get("amount"))
        if lot:
            amount = (amount // lot) * lot  # a percentage rounds down to the step
        return await self.submit_order(
            OrderIntent(
                symbol=symbol,
                asset_class=AssetClass.CRYPTO,
                side=Side.SELL if position.qty > 0 else Side.BUY,
                type=OrderType.MARKET,
                time_in_force=TimeInForce.GTC,
                qty=amount,
                reduce_only=True,
            )
        )

    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]:
        if cancel_orders:
            await self.cancel_all_orders()
        results = []
        for position in await self.list_positions():
            try:
                results.append(
                    BulkResult(id=position.symbol, status=200, order=await self.close_position(position.symbol))
                )
            except GatewayError as exc:
                results.append(BulkResult(id=position.symbol, status=bulk_status(exc), message=exc.message))
        return results

    async def _place_exit(self, leg: ExitLeg) -> Order:
        """One emulated exit, reduce-only. Exit prices come from the bot or the policy and may be
        off the exchange's grid; rounded toward the entry they protect at least as much as asked."""
        exchange = await self._ready()
        market = self._market(leg.symbol)
        tick = increment(exchange, (market.get("precision") or {}).get("price"))
        up = leg.side is Side.SELL  # a sell exit protects a long: its stop rounds up, its target down
        if leg.tag == "sl":
            kind = "limit" if leg.limit_price is not None else "market"
            limit = round_to_tick(leg.limit_price, tick, up) if leg.limit_price is not None else None
            params: dict[str, Any] = {"triggerPrice": round_to_tick(leg.stop_price, tick, up)}
        else:
            kind, limit, params = "limit", round_to_tick(leg.limit_price, tick, not up), {}
        params["reduceOnly"] = True
        return await self._place(
            exchange, market, leg.symbol, kind, leg.side, leg.qty, limit, params, leg.client_order_id
        )
