"""An embedded simulated broker: synchronous, pure, deterministic given its clock.

No asyncio, no I/O, no threads: ``PaperVenue`` wraps it for the gateway and the standalone paper
broker, and unit tests drive it directly. Prices only move when someone calls ``set_prices``; each
move matches that symbol's resting orders and nothing else.

Simplifications, chosen so tests are predictable (each is deliberate, not an oversight):

* Fills are whole. IOC and FOK therefore behave the same: fill all now, or cancel.
* A market order (and a marketable order on arrival) fills at the mark. A resting limit order
  whose limit the mark crosses fills at its limit price, never better: the price went through it.
  A triggered stop or trailing stop fills at the mark (it becomes a market order).
* The market is always open; DAY orders do not expire (``roll_day`` only resets ``last_equity``).
  OPG and CLS are accepted and treated like DAY.
* Margin is Reg-T style 2x for every asset class:
  ``buying_power = max(0, 2 * equity - gross market value - notional reserved by open orders)``,
  where an open order reserves only the part of it that would open or grow a position.
* Crypto cannot be shorted: a sell larger than the holding is rejected at submission, and a
  resting crypto sell that would oversell when it triggers is canceled instead of filled.

Futures mode (``PaperEngine(futures=True)``, the standalone Binance USD-M paper broker) changes
only what differs on a futures account, and nothing else:

* Crypto can be shorted (a perpetual contract has no holding to oversell).
* Each symbol has a leverage setting (``set_leverage``, whole numbers 1 to 125) and a margin mode
  (``set_margin_mode``: ``cross`` or ``isolated``; stored and reported, both margined the same way).
  Every symbol starts at ``DEFAULT_FUTURES_LEVERAGE`` = 1x: Binance's own default is 20x, but a
  paper account should never hold leverage nobody asked for.
* Margin replaces Reg-T buying power: a position ties up ``|notional| / leverage`` and an open order
  the part of it that opens or grows a position, over leverage;
  ``buying_power = max(0, equity - position margin - order margin)`` (Binance's available balance).
* ``cash`` is the wallet balance (equity minus unrealised P&L), as on a futures account, the
  account currency is USDT, and seed marks are ``FUTURES_MARKS`` (BTC/USDT, ETH/USDT, ...).
  There are no fees, funding payments or liquidations.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from ..errors import (
    GatewayError,
    InsufficientFunds,
    InvalidRequest,
    NotFound,
    OrderRejected,
)
from ..model import (
    Account,
    Asset,
    AssetClass,
    BulkResult,
    Clock,
    Order,
    OrderClass,
    OrderEventType,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionUpdate,
    Side,
    TimeInForce,
    VenueEvent,
    classify_symbol,
    contract_multiplier,
    utcnow,
)
from ..numbers import MAX_NOTIONAL, MAX_PERCENT, MAX_PRICE, MAX_QTY, fmt, parse_decimal

log = logging.getLogger(__name__)

ZERO = Decimal(0)
MARGIN_MULTIPLIER = Decimal(2)  # Reg-T: buying power is twice equity
QTY_QUANTUM = Decimal("0.000000001")  # 9 dp: quantities derived from notional or percentage
PRICE_QUANTUM = Decimal("0.000000000001")  # 12 dp: derived prices (average entry, trailing stop)
MAX_CLIENT_ORDER_ID = 128  # Alpaca's limit
MAX_LIST_LIMIT = 500  # Alpaca's cap on GET /v2/orders

# Seed marks for a paper engine created with ``seed_marks=True``. Round, plausible numbers so a
# freshly started paper gateway can trade at once; they are not market data and never move by
# themselves.
DEFAULT_MARKS: dict[str, Decimal] = {
    "AAPL": Decimal("190"),
    "MSFT": Decimal("420"),
    "SPY": Decimal("500"),
    "QQQ": Decimal("430"),
    "TSLA": Decimal("250"),
    "BTC/USD": Decimal("60000"),
    "ETH/USD": Decimal("3000"),
}

# Seed marks of a futures engine (``futures=True, seed_marks=True``): USDT-margined perpetuals.
FUTURES_MARKS: dict[str, Decimal] = {
    "BTC/USDT": Decimal("60000"),
    "ETH/USDT": Decimal("3000"),
    "SOL/USDT": Decimal("150"),
    "BNB/USDT": Decimal("600"),
    "XRP/USDT": Decimal("0.5"),
}
DEFAULT_FUTURES_LEVERAGE = 1
MAX_FUTURES_LEVERAGE = 125  # Binance's highest bracket
FUTURES_MAINTENANCE_RATE = Decimal("0.004")  # Binance's lowest BTCUSDT bracket; reported only
MARGIN_MODES = ("cross", "isolated")

_ASSET_NAMES = {
    "AAPL": "Apple Inc. Common Stock",
    "MSFT": "Microsoft Corporation Common Stock",
    "SPY": "SPDR S&P 500 ETF Trust",
    "QQQ": "Invesco QQQ Trust",
    "TSLA": "Tesla, Inc. Common Stock",
    "BTC/USD": "Bitcoin / US Dollar",
    "ETH/USD": "Ethereum / US Dollar",
}
_EXCHANGES = {AssetClass.US_EQUITY: "NASDAQ", AssetClass.CRYPTO: "CRYPTO", AssetClass.US_OPTION: "OPRA"}

_STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)
_IMMEDIATE_TIFS = (TimeInForce.IOC, TimeInForce.FOK)
_GROUP_TIFS = (TimeInForce.DAY, TimeInForce.GTC)

# Regular US session in UTC (EST); only used to make the always-open clock look plausible.
_SESSION_OPEN = time(14, 30, tzinfo=timezone.utc)
_SESSION_CLOSE = time(21, 0, tzinfo=timezone.utc)

Listener = Callable[[VenueEvent], None]
_CRYPTO_TYPES = (OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LIMIT)  # Alpaca's crypto order types
_CRYPTO_TIFS = (TimeInForce.GTC, TimeInForce.IOC)
_PLAIN = re.compile(r"^[A-Za-z0-9./_-]{1,48}$")


@dataclass(slots=True, eq=False)
class _Record:
    """The engine's bookkeeping around one order. ``order.legs`` stays empty inside the engine;
    legs live here and are attached only to the copies handed out."""

    order: Order
    seq: int  # submission order, breaks ties between equal timestamps
    parent: "_Record | None" = None
    legs: list["_Record"] = field(default_factory=list)
    triggered: bool = False  # a stop-limit whose stop was hit now works as a plain limit


@dataclass(slots=True)
class _Holding:
    asset_class: AssetClass
    qty: Decimal  # signed
    avg_entry_price: Decimal


class PaperEngine:
    """A simulated broker account. Every public method returns copies; nothing handed out aliases
    engine state."""

    def __init__(
        self,
        *,
        starting_equity: Decimal = Decimal("100000"),
        seed_marks: bool = False,
        now: Callable[[], datetime] = utcnow,
        account_id: str | None = None,
        futures: bool = False,
        alpaca_rules: bool = False,
    ):
        """``alpaca_rules``: refuse what Alpaca refuses where it changes a client's behaviour
        (see ``_check_alpaca_shape`` and ``_check_held_qty``). Off by default: the embedded venue
        stays lenient until the gateway places separate stops where Alpaca cannot carry legs."""
        starting_equity = parse_decimal(starting_equity, "starting_equity", maximum=MAX_NOTIONAL, allow_zero=True)
        self._now = lambda: _aware(now())  # a naive clock is taken as UTC, so comparisons never fail
        self.account_id = account_id or str(uuid.uuid4())
        self._created_at = self._now()
        self._cash = starting_equity
        self._marks: dict[str, Decimal] = {}
        self._day_marks: dict[str, Decimal] = {}
        self._positions: dict[str, _Holding] = {}
        self._realized: dict[str, Decimal] = {}
        self._records: dict[str, _Record] = {}
        self._by_client_id: dict[str, _Record] = {}
        self._open: dict[str, _Record] = {}  # every open order, HELD legs included
        self._resting: dict[str, dict[str, _Record]] = {}  # symbol -> working orders to match
        self._seq = 0
        self._listeners: list[Listener] = []
        self._events: list[VenueEvent] = []
        self._depth = 0  # nesting of public calls; events are delivered when it returns to 0
        self.futures = futures
        self.alpaca_rules = alpaca_rules
        self._leverage: dict[str, int] = {}  # futures: symbol -> leverage setting
        self._margin_modes: dict[str, str] = {}  # futures: symbol -> cross | isolated
        if seed_marks:
            self.set_prices(FUTURES_MARKS if futures else DEFAULT_MARKS)
        self._last_equity = self._equity()
        self._day_marks = dict(self._marks)

    # -----------------------------------------------------------------------------------
    # Listeners

    def add_listener(self, callback: Listener) -> None:
        """``callback(event)`` runs synchronously for every event, in order: an ``OrderUpdate``
        whenever an order is created (``new``; a group's held legs come nested in their parent's
        event), fills (``fill``, with the execution's qty and price and the position after it),
        is canceled, replaced (``replaced`` for the old order, then ``new`` for its successor),
        or is triggered (a stop-limit's stop was hit, or a held leg was released by its parent's
        fill); and a ``PositionUpdate`` after every fill. Events run after the engine's state is
        consistent, at the end of the call that caused them, so a listener may call back in."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    @contextlib.contextmanager
    def _delivering(self) -> Iterator[None]:
        """Wrap a public mutating call: queued events go out once the outermost call is done."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._flush_events()

    def _flush_events(self) -> None:
        self._depth += 1  # a listener that calls back in must not start a second delivery loop
        try:
            while self._events:
                event = self._events.pop(0)
                for callback in list(self._listeners):
                    try:
                        callback(event)
                    except Exception:  # a broken listener must not corrupt the book
                        log.exception("paper engine listener failed for %s", type(event).__name__)
        finally:
            self._depth -= 1

    def _emit(self, rec: _Record, event: OrderEventType, **details: object) -> None:
        """Queue an event about ``rec`` as it stands now (a copy, legs nested)."""
        if self._listeners:
            order = self._copy(rec, nested=True)
            self._events.append(OrderUpdate(event=event, order=order, at=order.updated_at, **details))

    def _emit_position(self, symbol: str, asset_class: AssetClass, at: datetime) -> None:
        if self._listeners:
            holding = self._positions.get(symbol)
            qty, entry = (holding.qty, holding.avg_entry_price) if holding is not None else (ZERO, ZERO)
            self._events.append(PositionUpdate(symbol=symbol, asset_class=asset_class, qty=qty, entry_price=entry, at=at))

    # -----------------------------------------------------------------------------------
    # Prices and the day

    def set_prices(self, prices: Mapping[str, object]) -> None:
        """Move marks, then match each moved symbol's resting orders. All prices are validated
        before any is applied, so a bad entry changes nothing."""
        parsed = {}
        for symbol, value in prices.items():
            if not isinstance(symbol, str) or classify_symbol(symbol) is None:
                raise InvalidRequest(f"unknown symbol {_shown(symbol)}")
            parsed[symbol] = parse_decimal(value, f"price for {symbol}", maximum=MAX_PRICE)
        with self._delivering():
            for symbol, price in parsed.items():
                self._marks[symbol] = price
                self._match_symbol(symbol, price)

    def set_price(self, symbol: str, price: object) -> None:
        self.set_prices({symbol: price})

    def marks(self) -> dict[str, Decimal]:
        return dict(self._marks)

    def roll_day(self) -> None:
        """Start a new trading day: ``last_equity`` (the base of daily P&L) becomes today's equity
        and positions' ``lastday_price`` becomes the current mark."""
        self._last_equity = self._equity()
        self._day_marks = dict(self._marks)

    def realized_pl(self, symbol: str | None = None) -> Decimal:
        """Realised P&L of one symbol, or of the whole account, since the engine started."""
        if symbol is not None:
            return self._realized.get(symbol, ZERO)
        return sum(self._realized.values(), ZERO)

    # -----------------------------------------------------------------------------------
    # Reads

    def get_account(self) -> Account:
        long_mv, short_mv = self._market_values()
        equity = self._cash + long_mv + short_mv
        gross = long_mv - short_mv
        if self.futures:
            return self._futures_account(equity, long_mv, short_mv)
        return Account(
            id=self.account_id,
            equity=equity,
            cash=self._cash,
            buying_power=self._buying_power(),
            long_market_value=long_mv,
            short_market_value=short_mv,
            last_equity=self._last_equity,
            multiplier=MARGIN_MULTIPLIER,
            # Reg-T style: 50% initial, 25% maintenance of the gross position value.
            initial_margin=gross / 2,
            maintenance_margin=gross / 4,
            created_at=self._created_at,
        )

    def _futures_account(self, equity: Decimal, long_mv: Decimal, short_mv: Decimal) -> Account:
        # Wallet balance: what the account holds before unrealised P&L (cash here counts every
        # fill's full notional, as a cash account would; adding back the entry value undoes it).
        entry_value = sum(
            (h.qty * h.avg_entry_price * contract_multiplier(h.asset_class) for h in self._positions.values()), ZERO
        )
        # Divisions by leverage can run to 28 digits; 12 places is finer than any wire carries.
        position_margin = self._position_margin().quantize(PRICE_QUANTUM, rounding=ROUND_UP)
        return Account(
            id=self.account_id,
            equity=equity,
            cash=self._cash + entry_value,
            buying_power=self._buying_power().quantize(PRICE_QUANTUM, rounding=ROUND_DOWN),
            long_market_value=long_mv,
            short_market_value=short_mv,
            last_equity=self._last_equity,
            currency="USDT",
            multiplier=Decimal(1),
            initial_margin=position_margin,
            maintenance_margin=(long_mv - short_mv) * FUTURES_MAINTENANCE_RATE,
            created_at=self._created_at,
        )

    # -----------------------------------------------------------------------------------
    # Futures settings

    def get_leverage(self, symbol: str) -> int:
        return self._leverage.get(symbol, DEFAULT_FUTURES_LEVERAGE)

    def set_leverage(self, symbol: str, leverage: int) -> int:
        """Futures only. Refused (InsufficientFunds) when the margin already in use at the new
        leverage would exceed equity."""
        self._require_futures("leverage settings")
        self._require_market(symbol)
        if isinstance(leverage, bool) or not isinstance(leverage, int) or not 1 <= leverage <= MAX_FUTURES_LEVERAGE:
            raise InvalidRequest(f"leverage must be a whole number from 1 to {MAX_FUTURES_LEVERAGE}")
        old = self.get_leverage(symbol)
        self._leverage[symbol] = leverage
        if leverage < old and self._buying_power_raw() < 0:
            self._leverage[symbol] = old
            raise InsufficientFunds(f"margin is insufficient to lower {_shown(symbol)} leverage to {leverage}x")
        return leverage

    def get_margin_mode(self, symbol: str) -> str:
        return self._margin_modes.get(symbol, "cross")

    def set_margin_mode(self, symbol: str, mode: str) -> None:
        """Futures only; like Binance, refused while the symbol has a position or open orders."""
        self._require_futures("margin modes")
        self._require_market(symbol)
        if mode not in MARGIN_MODES:
            raise InvalidRequest("margin mode must be cross or isolated")
        if mode == self.get_margin_mode(symbol):
            return
        busy = symbol in self._positions or any(rec.order.symbol == symbol for rec in self._open.values())
        if busy:
            raise OrderRejected("margin type cannot be changed while the symbol has a position or open orders")
        self._margin_modes[symbol] = mode

    def _require_futures(self, what: str) -> None:
        if not self.futures:
            raise OrderRejected(f"{what} are only supported by a futures paper account")

    def _require_market(self, symbol: str) -> None:
        if not isinstance(symbol, str) or classify_symbol(symbol) is not AssetClass.CRYPTO or symbol not in self._marks:
            raise NotFound(f"unknown futures symbol {_shown(symbol)}")

    def list_positions(self) -> list[Position]:
        return [self._position(symbol) for symbol in sorted(self._positions)]

    def get_position(self, symbol: str) -> Position:
        if symbol not in self._positions:
            raise NotFound(f"position does not exist: {_shown(symbol)}")
        return self._position(symbol)

    def get_order(self, order_id: str, nested: bool = False) -> Order:
        return self._copy(self._record(order_id), nested=nested)

    def get_order_by_client_id(self, client_order_id: str) -> Order:
        rec = self._by_client_id.get(client_order_id)
        if rec is None:
            raise NotFound("order not found for that client_order_id")
        return self._copy(rec, nested=True)

    def list_orders(self, query: OrderQuery) -> list[Order]:
        """Alpaca's GET /v2/orders. With ``nested`` only top-level orders are listed, each with
        its legs, and a group matches the status filter when any of its members does; the other
        filters apply to the top-level order. Without ``nested`` every order (legs too) is listed
        on its own, without legs. ``after``/``until`` are exclusive bounds on ``submitted_at``."""
        if query.status not in ("open", "closed", "all"):
            raise InvalidRequest("status must be open, closed or all")
        if query.direction not in ("asc", "desc"):
            raise InvalidRequest("direction must be asc or desc")
        limit = 50 if query.limit is None else query.limit
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after = _aware(query.after)
        until = _aware(query.until)
        symbols = set(query.symbols)

        def status_ok(rec: _Record) -> bool:
            if query.status == "all":
                return True
            return rec.order.status.is_open == (query.status == "open")

        def wanted(rec: _Record) -> bool:
            order = rec.order
            if query.nested:
                if rec.parent is not None:
                    return False
                if not (status_ok(rec) or any(status_ok(leg) for leg in rec.legs)):
                    return False
            elif not status_ok(rec):
                return False
            return (
                (after is None or order.submitted_at > after)
                and (until is None or order.submitted_at < until)
                and (not symbols or order.symbol in symbols)
                and (query.side is None or order.side == query.side)
            )

        matches = sorted(
            (rec for rec in self._records.values() if wanted(rec)),
            key=lambda rec: (rec.order.submitted_at, rec.seq),
            reverse=query.direction == "desc",
        )
        return [self._copy(rec, nested=query.nested) for rec in matches[: min(limit, MAX_LIST_LIMIT)]]

    def latest_price(self, symbol: str, asset_class: AssetClass | None = None) -> Decimal:
        try:
            return self._marks[symbol]
        except KeyError:
            raise NotFound(f"no price for {_shown(symbol)}") from None

    def get_asset(self, symbol: str) -> Asset:
        asset_class = classify_symbol(symbol) if isinstance(symbol, str) else None
        if asset_class is None or symbol not in self._marks:
            raise NotFound(f"asset not found: {_shown(symbol)}")
        is_crypto = asset_class is AssetClass.CRYPTO and not self.futures  # futures can short crypto
        return Asset(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"paper-asset:{symbol}")),
            symbol=symbol,
            asset_class=asset_class,
            name=_ASSET_NAMES.get(symbol, f"{symbol} (paper)"),
            exchange=_EXCHANGES[asset_class],
            marginable=not is_crypto,
            shortable=not is_crypto,
            easy_to_borrow=not is_crypto,
            fractionable=asset_class is not AssetClass.US_OPTION,
        )

    def get_clock(self) -> Clock:
        """The paper market never closes, so ``is_open`` is always true. ``next_open`` and
        ``next_close`` are the next regular-session times (weekdays, 14:30 and 21:00 UTC) after
        now, so clients that sleep until the next open or close get a sensible future time."""
        now = self._now()
        return Clock(
            timestamp=now,
            is_open=True,
            next_open=_next_weekday_time(now, _SESSION_OPEN),
            next_close=_next_weekday_time(now, _SESSION_CLOSE),
        )

    # -----------------------------------------------------------------------------------
    # Orders

    def submit_order(self, intent: OrderIntent) -> Order:
        """Validate, check funds, record and work the order; returns it (legs nested).

        Raises InvalidRequest for malformed intents, OrderRejected for a duplicate
        client_order_id, a missing price or an oversold crypto holding, and InsufficientFunds
        when the order would exceed buying power. A refused order leaves no trace."""
        with self._delivering():
            client_order_id = self._claim_client_order_id(intent.client_order_id)
            asset_class = self._validate_intent(intent)
            group = self._build_group(intent, asset_class, client_order_id)
            self._pre_trade_checks(intent, group)
            for rec in group:
                # Legs are announced nested in their parent's event, as Alpaca does.
                self._register(rec, OrderEventType.NEW if rec.parent is None else None)
            for rec in group:
                if rec.order.status is not OrderStatus.HELD and rec.order.status.is_open:
                    self._work(rec)
            return self._copy(group[0], nested=True)

    def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        """A replace is a new order: the old one becomes REPLACED, the new one (``replaces`` set)
        takes its place, legs included, and is checked and worked like a fresh submission.
        Replacing the entry of a bracket/OTO whose legs are still held resizes the legs too."""
        with self._delivering():
            old = self._record(order_id)
            if not old.order.status.is_open:
                raise OrderRejected("order is not open and cannot be replaced")
            new_order = self._replaced_order(old.order, change)
            held = new_order.status is OrderStatus.HELD  # a held leg reserves nothing until it works
            cost = ZERO if held else self._margin_cost(new_order)
            if cost > self._buying_power(exclude=old.order.id):
                raise InsufficientFunds("insufficient buying power")
            new = _Record(new_order, self._next_seq(), parent=old.parent, legs=old.legs)
            if new_order.stop_price == old.order.stop_price:
                new.triggered = old.triggered
            self._swap_in(old, new)
            self._register(new, None)
            old.order.replaced_by = new_order.id
            self._set_status(old, OrderStatus.REPLACED, event=OrderEventType.REPLACED, replaced_at=self._now())
            self._emit(new, OrderEventType.NEW)
            if new.order.status is not OrderStatus.HELD:
                self._work(new)
            return self._copy(new, nested=True)

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order. Canceling a parent cancels its legs; canceling one exit of an
        OCO pair (bracket legs, OCO) cancels the other, since they stand or fall together."""
        with self._delivering():
            rec = self._record(order_id)
            if not rec.order.status.is_open:
                raise OrderRejected("order is not cancelable")
            self._cancel(rec)

    def cancel_all_orders(self) -> list[BulkResult]:
        """Cancel every open order; one row per order canceled (legs included)."""
        with self._delivering():
            before = list(self._open.values())
            for rec in before:
                if rec.order.status.is_open:
                    self._cancel(rec)
            return [
                BulkResult(id=rec.order.id, status=200, order=self._copy(rec, nested=False))
                for rec in before
                if rec.order.status is OrderStatus.CANCELED
            ]

    def cancel_symbol_orders(self, symbol: str) -> list[str]:
        """Cancel every open order of one symbol, conditional ones too (Binance's countdown
        expiring); the ids canceled."""
        with self._delivering():
            before = [rec for rec in self._open.values() if rec.order.symbol == symbol]
            for rec in before:
                if rec.order.status.is_open:
                    self._cancel(rec)
            return [rec.order.id for rec in before if rec.order.status is OrderStatus.CANCELED]

    def close_position(self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None) -> Order:
        """A market order on the opposite side for the whole position, ``qty`` of it, or
        ``percentage`` percent of it (rounded down to 9 dp, whole contracts for options)."""
        with self._delivering():
            holding = self._positions.get(symbol)
            if holding is None:
                raise NotFound(f"position does not exist: {_shown(symbol)}")
            amount = self._close_qty(holding, qty, percentage)
            return self.submit_order(
                OrderIntent(
                    symbol=symbol,
                    asset_class=holding.asset_class,
                    side=Side.SELL if holding.qty > 0 else Side.BUY,
                    type=OrderType.MARKET,
                    time_in_force=TimeInForce.GTC if holding.asset_class is AssetClass.CRYPTO else TimeInForce.DAY,
                    qty=amount,
                )
            )

    def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]:
        with self._delivering():
            if cancel_orders:
                self.cancel_all_orders()
            results = []
            for symbol in sorted(self._positions):
                try:
                    results.append(BulkResult(id=symbol, status=200, order=self.close_position(symbol)))
                except GatewayError as exc:
                    results.append(BulkResult(id=symbol, status=_http_status(exc), message=exc.message))
            return results

    # -----------------------------------------------------------------------------------
    # Validation

    def _claim_client_order_id(self, client_order_id: str | None) -> str:
        if client_order_id is None:
            return str(uuid.uuid4())
        if not isinstance(client_order_id, str) or not client_order_id or len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise InvalidRequest(f"client_order_id must be 1 to {MAX_CLIENT_ORDER_ID} characters")
        if client_order_id in self._by_client_id:
            raise OrderRejected("client_order_id must be unique")
        return client_order_id

    def _validate_intent(self, intent: OrderIntent) -> AssetClass:
        """Shape checks (InvalidRequest). Only a bracket's exit prices look at the market: they
        are checked against the entry's limit/stop price, or the mark for a market entry."""
        asset_class = classify_symbol(intent.symbol) if isinstance(intent.symbol, str) else None
        if asset_class is None:
            raise InvalidRequest(f"unknown symbol {_shown(intent.symbol)}")
        self._validate_amount(intent, asset_class)
        self._validate_prices(intent)
        self._validate_class(intent)
        if self.alpaca_rules:
            self._check_alpaca_shape(intent, asset_class)
        return asset_class

    @staticmethod
    def _check_alpaca_shape(intent: OrderIntent, asset_class: AssetClass) -> None:
        """What Alpaca accepts by asset class: crypto orders are simple market, limit or
        stop-limit orders, gtc or ioc; notional and fractional equity orders are simple day
        orders (notional: market only; fractional: market or limit)."""
        cls = intent.order_class
        if asset_class is AssetClass.CRYPTO:
            if cls is not OrderClass.SIMPLE:
                raise InvalidRequest(f"crypto orders must be simple orders (order_class {cls.value} is not supported)")
            if intent.type not in _CRYPTO_TYPES:
                raise InvalidRequest(f"crypto orders must be market, limit or stop_limit (not {intent.type.value})")
            if intent.time_in_force not in _CRYPTO_TIFS:
                raise InvalidRequest(f"crypto orders must be gtc or ioc (not {intent.time_in_force.value})")
            return
        if asset_class is not AssetClass.US_EQUITY:
            return
        fractional = intent.qty is not None and intent.qty != intent.qty.to_integral_value()
        if intent.notional is None and not fractional:
            return
        what = "notional" if intent.notional is not None else "fractional"
        if cls is not OrderClass.SIMPLE:
            raise InvalidRequest(f"{what} orders must be simple orders (order_class {cls.value} is not supported)")
        allowed = (OrderType.MARKET,) if what == "notional" else (OrderType.MARKET, OrderType.LIMIT)
        if intent.type not in allowed:
            raise InvalidRequest(f"{what} orders must be {' or '.join(t.value for t in allowed)} orders")
        if intent.time_in_force is not TimeInForce.DAY:
            raise InvalidRequest(f"{what} orders must be day orders")

    def _validate_amount(self, intent: OrderIntent, asset_class: AssetClass) -> None:
        if (intent.qty is None) == (intent.notional is None):
            raise InvalidRequest("exactly one of qty and notional is required")
        if intent.qty is not None:
            qty = _positive(intent.qty, "qty", MAX_QTY)
            if asset_class is AssetClass.US_OPTION and qty != qty.to_integral_value():
                raise InvalidRequest("qty must be a whole number of contracts for options")
            return
        _positive(intent.notional, "notional", MAX_NOTIONAL)
        if intent.type is not OrderType.MARKET or intent.order_class is not OrderClass.SIMPLE:
            raise InvalidRequest("notional is only supported for simple market orders")
        if asset_class is AssetClass.US_OPTION:
            raise InvalidRequest("notional orders are not supported for options")

    def _validate_prices(self, intent: OrderIntent) -> None:
        kind = intent.type
        needs_limit = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
        # An OCO names its take-profit limit in take_profit; limit_price may be left out.
        oco_limit = intent.order_class is OrderClass.OCO and intent.take_profit is not None
        if needs_limit and intent.limit_price is None and not oco_limit:
            raise InvalidRequest(f"limit_price is required for {kind.value} orders")
        if not needs_limit and intent.limit_price is not None:
            raise InvalidRequest(f"limit_price is not allowed for {kind.value} orders")
        if needs_stop and intent.stop_price is None:
            raise InvalidRequest(f"stop_price is required for {kind.value} orders")
        if not needs_stop and intent.stop_price is not None:
            raise InvalidRequest(f"stop_price is not allowed for {kind.value} orders")
        trails = [t for t in (intent.trail_price, intent.trail_percent) if t is not None]
        if kind is OrderType.TRAILING_STOP and len(trails) != 1:
            raise InvalidRequest("trailing_stop orders need exactly one of trail_price and trail_percent")
        if kind is not OrderType.TRAILING_STOP and trails:
            raise InvalidRequest("trail_price and trail_percent are only for trailing_stop orders")
        _positive_or_none(intent.limit_price, "limit_price", MAX_PRICE)
        _positive_or_none(intent.stop_price, "stop_price", MAX_PRICE)
        _positive_or_none(intent.trail_price, "trail_price", MAX_PRICE)
        percent = _positive_or_none(intent.trail_percent, "trail_percent", MAX_PERCENT)
        if percent is not None and percent >= 100:
            raise InvalidRequest("trail_percent must be below 100")
        if intent.time_in_force in _IMMEDIATE_TIFS and kind in _STOP_TYPES:
            raise InvalidRequest(f"time_in_force {intent.time_in_force.value} is not allowed for {kind.value} orders")

    def _validate_class(self, intent: OrderIntent) -> None:
        cls, tp, sl = intent.order_class, intent.take_profit, intent.stop_loss
        if tp is not None:
            _positive(tp.limit_price, "take_profit.limit_price", MAX_PRICE)
        if sl is not None:
            _positive(sl.stop_price, "stop_loss.stop_price", MAX_PRICE)
            _positive_or_none(sl.limit_price, "stop_loss.limit_price", MAX_PRICE)
        if cls is OrderClass.SIMPLE:
            if tp is not None or sl is not None:
                raise InvalidRequest("take_profit and stop_loss need order_class bracket, oco or oto")
            return
        if intent.time_in_force not in _GROUP_TIFS:
            raise InvalidRequest(f"{cls.value} orders must be day or gtc")
        if cls is OrderClass.OTO:
            if (tp is None) == (sl is None):
                raise InvalidRequest("oto orders need exactly one of take_profit and stop_loss")
        elif tp is None or sl is None:
            raise InvalidRequest(f"{cls.value} orders need both take_profit and stop_loss")
        if cls is OrderClass.OCO:
            if intent.type is not OrderType.LIMIT:
                raise InvalidRequest("oco orders must be of type limit")
            if intent.limit_price is not None and intent.limit_price != tp.limit_price:
                raise InvalidRequest("oco limit_price must equal take_profit.limit_price")
            # Both legs exit on intent.side: a sell OCO takes profit above and stops out below.
            self._check_exit_prices(intent.side, tp.limit_price, sl.stop_price, entry=None)
        else:
            if intent.type is OrderType.TRAILING_STOP:
                raise InvalidRequest(f"{cls.value} entry cannot be a trailing_stop order")
            if cls is OrderClass.BRACKET:
                entry = intent.limit_price or intent.stop_price or self._marks.get(intent.symbol)
                self._check_exit_prices(intent.side.opposite, tp.limit_price, sl.stop_price, entry=entry)

    @staticmethod
    def _check_exit_prices(exit_side: Side, take_profit: Decimal, stop: Decimal, entry: Decimal | None) -> None:
        """Exits on the sell side (closing a long) take profit above and stop below the entry;
        exits on the buy side (closing a short) the other way round."""
        if exit_side is Side.SELL:
            ok = stop < take_profit and (entry is None or stop < entry < take_profit)
            rule = "stop_loss.stop_price < entry < take_profit.limit_price"
        else:
            ok = take_profit < stop and (entry is None or take_profit < entry < stop)
            rule = "take_profit.limit_price < entry < stop_loss.stop_price"
        if not ok:
            raise InvalidRequest(f"exit prices must satisfy {rule}")

    def _pre_trade_checks(self, intent: OrderIntent, group: list[_Record]) -> None:
        """Refusals that depend on the book and prices: OrderRejected or InsufficientFunds."""
        parent = group[0].order
        mark = self._marks.get(parent.symbol)
        needs_mark = parent.type in (OrderType.MARKET, OrderType.TRAILING_STOP)
        if needs_mark and mark is None:
            raise OrderRejected(f"no price for {parent.symbol}")
        working = [rec.order for rec in group if rec.order.status is not OrderStatus.HELD]
        if self._spot_crypto(parent.asset_class):
            for order in working:
                if order.side is Side.SELL:
                    self._check_crypto_balance(order.symbol, self._order_qty(order, mark))
        elif self.alpaca_rules:
            for order in working:
                self._check_held_qty(order, self._order_qty(order, mark))
        if intent.reduce_only and self._opening_qty(parent.symbol, parent.side, self._order_qty(parent, mark)) > 0:
            raise OrderRejected("reduce_only order would open or increase a position")
        cost = sum((self._margin_cost(order) for order in working), ZERO)
        if cost > self._buying_power():
            raise InsufficientFunds("insufficient buying power")

    def _check_crypto_balance(self, symbol: str, qty: Decimal, exclude: str | None = None) -> None:
        held = max(self._held(symbol), ZERO)
        if self.alpaca_rules:  # coins an open sell already holds are not available again
            held = max(ZERO, held - self._held_for_orders(symbol, exclude))
        if qty > held:
            raise OrderRejected(f"insufficient balance for {symbol} (requested: {qty}, available: {held})")

    def _check_held_qty(self, order: Order, qty: Decimal, exclude: str | None = None) -> None:
        """Alpaca's held-for-orders rule: a sell against a long position may sell only what no
        open sell order already holds (so a bot cannot sell the shares its stop protects), and
        never more than the position (one order does not go from long to short)."""
        if order.side is not Side.SELL:
            return
        position = self._held(order.symbol)
        if position <= 0:
            return  # a short sale: nothing held to sell twice
        available = max(ZERO, position - self._held_for_orders(order.symbol, exclude))
        if qty > available:
            raise InsufficientFunds(
                f"insufficient qty available for order (requested: {fmt(qty)}, available: {fmt(available)})"
            )

    def _held_for_orders(self, symbol: str, exclude: str | None = None) -> Decimal:
        """Quantity the working sell orders of ``symbol`` hold. Exits that cancel each other
        (a bracket's two legs, an OCO pair) hold their quantity once."""
        groups: dict[str, Decimal] = {}
        for rec in self._open.values():
            order = rec.order
            if order.symbol != symbol or order.side is not Side.SELL or order.status is OrderStatus.HELD:
                continue
            if order.id == exclude:
                continue
            remaining = self._order_qty(order, self._marks.get(symbol)) - order.filled_qty
            key = (rec.parent or rec).order.id if self._exit_group(rec) else order.id
            groups[key] = max(groups.get(key, ZERO), remaining)
        return sum(groups.values(), ZERO)

    def _close_qty(self, holding: _Holding, qty: Decimal | None, percentage: Decimal | None) -> Decimal:
        size = abs(holding.qty)
        if qty is not None and percentage is not None:
            raise InvalidRequest("give qty or percentage, not both")
        if qty is not None:
            qty = _positive(qty, "qty", MAX_QTY)
            if qty > size:
                raise OrderRejected(f"insufficient qty available for order (requested: {qty}, available: {size})")
            return qty
        if percentage is None:
            return size
        percentage = _positive(percentage, "percentage", MAX_PERCENT)
        quantum = Decimal(1) if holding.asset_class is AssetClass.US_OPTION else QTY_QUANTUM
        amount = (size * percentage / 100).quantize(quantum, rounding=ROUND_DOWN)
        if amount <= 0:
            raise InvalidRequest("percentage of the position rounds to zero")
        return amount

    # -----------------------------------------------------------------------------------
    # Building orders

    def _build_group(self, intent: OrderIntent, asset_class: AssetClass, client_order_id: str) -> list[_Record]:
        """The parent record first, then its legs, linked but not yet registered."""
        cls = intent.order_class
        parent_fields = dict(
            symbol=intent.symbol,
            asset_class=asset_class,
            side=intent.side,
            type=intent.type,
            time_in_force=intent.time_in_force,
            qty=intent.qty,
            notional=intent.notional,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            trail_price=intent.trail_price,
            trail_percent=intent.trail_percent,
            order_class=cls,
            extended_hours=intent.extended_hours,
            post_only=intent.post_only,
            profit_trigger=intent.profit_trigger,
            close_position=intent.close_position,
            activation_price=intent.activation_price,
        )
        if cls is OrderClass.OCO:  # Alpaca's shape: the take-profit limit is the parent
            parent_fields["limit_price"] = intent.take_profit.limit_price
        parent = self._new_record(client_order_id=client_order_id, status=OrderStatus.NEW, **parent_fields)
        if parent.order.type is OrderType.TRAILING_STOP:
            mark = self._marks.get(intent.symbol)
            self._init_trail(parent.order, mark if mark is not None and _trail_active(parent.order, mark) else None)

        leg_status = OrderStatus.NEW if cls is OrderClass.OCO else OrderStatus.HELD
        exit_side = intent.side if cls is OrderClass.OCO else intent.side.opposite
        leg_fields = dict(
            symbol=intent.symbol,
            asset_class=asset_class,
            side=exit_side,
            time_in_force=intent.time_in_force,
            qty=intent.qty,
            order_class=cls,
            status=leg_status,
        )
        if intent.take_profit is not None and cls is not OrderClass.OCO:
            parent.legs.append(
                self._new_record(type=OrderType.LIMIT, limit_price=intent.take_profit.limit_price, **leg_fields)
            )
        if intent.stop_loss is not None:
            sl = intent.stop_loss
            kind = OrderType.STOP if sl.limit_price is None else OrderType.STOP_LIMIT
            parent.legs.append(
                self._new_record(type=kind, stop_price=sl.stop_price, limit_price=sl.limit_price, **leg_fields)
            )
        for leg in parent.legs:
            leg.parent = parent
        return [parent, *parent.legs]

    def _new_record(self, *, status: OrderStatus, client_order_id: str | None = None, **fields) -> _Record:
        now = self._now()
        order = Order(
            id=str(uuid.uuid4()),
            client_order_id=client_order_id or str(uuid.uuid4()),
            status=status,
            created_at=now,
            updated_at=now,
            submitted_at=now,
            **fields,
        )
        return _Record(order, self._next_seq())

    def _replaced_order(self, old: Order, change: OrderReplace) -> Order:
        """The order that would replace ``old``: validated, not yet registered."""
        fields_set = [change.qty, change.time_in_force, change.limit_price, change.stop_price, change.trail]
        if all(value is None for value in fields_set) and change.client_order_id is None:
            raise InvalidRequest("nothing to replace")
        if change.limit_price is not None and old.type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            raise InvalidRequest(f"limit_price cannot be set on a {old.type.value} order")
        if change.stop_price is not None and old.type not in (OrderType.STOP, OrderType.STOP_LIMIT):
            raise InvalidRequest(f"stop_price cannot be set on a {old.type.value} order")
        if change.trail is not None and old.type is not OrderType.TRAILING_STOP:
            raise InvalidRequest(f"trail cannot be set on a {old.type.value} order")
        tif = change.time_in_force or old.time_in_force
        if tif in _IMMEDIATE_TIFS and (old.type in _STOP_TYPES or old.order_class is not OrderClass.SIMPLE):
            raise InvalidRequest(f"time_in_force {tif.value} is not allowed for this order")
        qty = _positive_or_none(change.qty, "qty", MAX_QTY)
        if qty is not None and old.asset_class is AssetClass.US_OPTION and qty != qty.to_integral_value():
            raise InvalidRequest("qty must be a whole number of contracts for options")
        client_order_id = self._claim_client_order_id(change.client_order_id)
        now = self._now()
        new = replace(
            old,
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            status=OrderStatus.HELD if old.status is OrderStatus.HELD else OrderStatus.NEW,
            created_at=now,
            updated_at=now,
            submitted_at=now,
            qty=qty or old.qty,
            time_in_force=tif,
            limit_price=_positive_or_none(change.limit_price, "limit_price", MAX_PRICE) or old.limit_price,
            stop_price=_positive_or_none(change.stop_price, "stop_price", MAX_PRICE) or old.stop_price,
            replaces=old.id,
            replaced_by=None,
            replaced_at=None,
            legs=[],
        )
        if change.trail is not None:
            trail = _positive(change.trail, "trail", MAX_PRICE)
            if old.trail_percent is not None:
                if trail >= 100:
                    raise InvalidRequest("trail_percent must be below 100")
                new.trail_percent = trail
            else:
                new.trail_price = trail
            new.stop_price = self._trail_stop(new)
        if new.side is Side.SELL and new.status is not OrderStatus.HELD:
            if self._spot_crypto(old.asset_class):
                self._check_crypto_balance(new.symbol, new.qty, exclude=old.id)
            elif self.alpaca_rules:
                self._check_held_qty(new, self._order_qty(new, self._marks.get(new.symbol)), exclude=old.id)
        return new

    def _swap_in(self, old: _Record, new: _Record) -> None:
        """Put ``new`` where ``old`` was in its group: in the parent's legs, as the legs' parent."""
        if old.parent is not None:
            siblings = old.parent.legs
            siblings[siblings.index(old)] = new
        for leg in new.legs:
            leg.parent = new
            resize = new.order.order_class in (OrderClass.BRACKET, OrderClass.OTO)
            if resize and leg.order.status is OrderStatus.HELD and leg.order.qty != new.order.qty:
                leg.order.qty = new.order.qty
                leg.order.updated_at = self._now()
        old.legs = []

    def _register(self, rec: _Record, event: OrderEventType | None) -> None:
        order = rec.order
        self._records[order.id] = rec
        self._by_client_id[order.client_order_id] = rec
        self._set_status(rec, order.status, event=event)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -----------------------------------------------------------------------------------
    # Matching

    def _match_symbol(self, symbol: str, mark: Decimal) -> None:
        """Only this symbol's working orders are looked at. A fill can cancel siblings or
        activate legs (which are matched as they arrive), so re-check membership as we go."""
        book = self._resting.get(symbol)
        if not book:
            return
        for rec in list(book.values()):
            if rec.order.id in book:
                self._match(rec, mark, arriving=False)

    def _work(self, rec: _Record) -> None:
        """An order starts working: fill it now if it can, else let it rest, except IOC/FOK,
        which are canceled when they cannot fill at once (fills are whole, so they agree)."""
        mark = self._marks.get(rec.order.symbol)
        if mark is not None and rec.order.post_only and _limit_crossed(rec.order, mark):
            # Binance GTX: a post-only order that would take is expired, never filled.
            self._set_status(rec, OrderStatus.EXPIRED, event=OrderEventType.EXPIRED, expired_at=self._now())
            return
        if mark is not None:
            self._match(rec, mark, arriving=True)
        if rec.order.status.is_open and rec.order.time_in_force in _IMMEDIATE_TIFS:
            self._cancel(rec)

    def _match(self, rec: _Record, mark: Decimal, *, arriving: bool) -> None:
        order = rec.order
        if order.type is OrderType.MARKET:
            self._fill(rec, mark)
            return
        if order.type is OrderType.TRAILING_STOP:
            if not _trail_active(order, mark):
                return  # waiting for its activation price
            self._follow_trail(order, mark)
        if order.type in (OrderType.STOP, OrderType.TRAILING_STOP):
            if _stop_hit(order, mark):
                self._fill(rec, mark)
            return
        if order.type is OrderType.STOP_LIMIT and not rec.triggered:
            if not _stop_hit(order, mark):
                return
            rec.triggered = True
            order.updated_at = self._now()
            self._emit(rec, OrderEventType.TRIGGERED)
            arriving = True  # the triggered order is a new limit order reaching the market now
        if _limit_crossed(order, mark):
            # Marketable on arrival: the mark is the best price available. Crossed while
            # resting: the price moved through the limit, which is all the fill we can assume.
            self._fill(rec, mark if arriving else order.limit_price)

    def _init_trail(self, order: Order, mark: Decimal | None) -> None:
        order.hwm = mark
        order.stop_price = self._trail_stop(order) if mark is not None else None

    def _follow_trail(self, order: Order, mark: Decimal) -> None:
        """A sell trails the high-water mark; a buy trails the low-water mark (kept in ``hwm``)."""
        if order.hwm is None:
            order.hwm = mark
        elif order.side is Side.SELL:
            order.hwm = max(order.hwm, mark)
        else:
            order.hwm = min(order.hwm, mark)
        order.stop_price = self._trail_stop(order)

    @staticmethod
    def _trail_stop(order: Order) -> Decimal | None:
        if order.hwm is None:
            return None
        sign = order.side.sign  # sell: below the high-water mark; buy: above the low-water mark
        if order.trail_price is not None:
            return order.hwm + sign * order.trail_price
        return (order.hwm * (1 + sign * order.trail_percent / 100)).quantize(PRICE_QUANTUM)

    def _fill(self, rec: _Record, price: Decimal) -> None:
        order = rec.order
        if order.close_position:
            # Binance closePosition: closes the position there is when it fires, never opens one.
            held = self._held(order.symbol)
            if held == 0 or (held > 0) != (order.side is Side.SELL):
                self._set_status(rec, OrderStatus.EXPIRED, event=OrderEventType.EXPIRED, expired_at=self._now())
                return
            order.qty = abs(held)
        qty = self._order_qty(order, price)
        if self._spot_crypto(order.asset_class) and order.side is Side.SELL and qty > self._held(order.symbol):
            self._cancel(rec)  # the holding shrank since submission; crypto never goes short
            return
        self._apply_fill(order.symbol, order.asset_class, order.side.sign * qty, price)
        now = self._now()
        order.filled_qty = qty
        order.filled_avg_price = price
        self._set_status(rec, OrderStatus.FILLED, filled_at=now)
        self._emit(
            rec,
            OrderEventType.FILL,
            qty=qty,
            price=price,
            position_qty=self._held(order.symbol),
            execution_id=str(uuid.uuid4()),
        )
        self._emit_position(order.symbol, order.asset_class, now)
        self._after_fill(rec)

    def _after_fill(self, rec: _Record) -> None:
        """An entry's fill releases its held exit legs; an exit's fill cancels the other exits."""
        if rec.order.order_class is OrderClass.SIMPLE:
            return
        self._cancel_exit_siblings(rec)
        for leg in rec.legs:
            if leg.order.status is OrderStatus.HELD:
                self._set_status(leg, OrderStatus.NEW, event=OrderEventType.TRIGGERED)
                self._work(leg)

    def _cancel(self, rec: _Record) -> None:
        if not rec.order.status.is_open:
            return
        self._set_status(rec, OrderStatus.CANCELED, event=OrderEventType.CANCELED, canceled_at=self._now())
        for leg in rec.legs:
            self._cancel(leg)
        self._cancel_exit_siblings(rec)

    def _cancel_exit_siblings(self, rec: _Record) -> None:
        for other in self._exit_group(rec):
            if other is not rec:
                self._cancel(other)

    @staticmethod
    def _exit_group(rec: _Record) -> list[_Record]:
        """The exits that are one-cancels-other with ``rec``: a bracket's two legs, or an OCO's
        parent and leg. Empty for entries, simple orders and OTO legs (a lone exit)."""
        top = rec.parent or rec
        cls = rec.order.order_class
        if cls is OrderClass.OCO:
            return [top, *top.legs]
        if cls is OrderClass.BRACKET and rec.parent is not None:
            return list(top.legs)
        return []

    def _set_status(
        self, rec: _Record, status: OrderStatus, *, event: OrderEventType | None = None, **timestamps: datetime
    ) -> None:
        """The one place status changes: keeps the open set and the per-symbol book in step
        and, given an ``event``, tells listeners."""
        order = rec.order
        order.status = status
        order.updated_at = self._now()
        for name, value in timestamps.items():
            setattr(order, name, value)
        if status.is_open:
            self._open[order.id] = rec
        else:
            self._open.pop(order.id, None)
        book = self._resting.setdefault(order.symbol, {})
        if status.is_open and status is not OrderStatus.HELD:
            book[order.id] = rec
        else:
            book.pop(order.id, None)
        if event is not None:
            self._emit(rec, event)

    # -----------------------------------------------------------------------------------
    # Positions, cash and buying power

    def _apply_fill(self, symbol: str, asset_class: AssetClass, signed_qty: Decimal, price: Decimal) -> None:
        multiplier = contract_multiplier(asset_class)
        self._cash -= signed_qty * price * multiplier
        holding = self._positions.get(symbol)
        if holding is None:
            self._positions[symbol] = _Holding(asset_class, signed_qty, price)
            return
        old = holding.qty
        new = old + signed_qty
        if old * signed_qty > 0:  # adding: the entry price is the quantity-weighted average
            total = old * holding.avg_entry_price + signed_qty * price
            holding.avg_entry_price = (total / new).quantize(PRICE_QUANTUM)
        else:  # reducing: realise P&L on the closed part; the remainder keeps its entry price
            closed = min(abs(signed_qty), abs(old))
            direction = 1 if old > 0 else -1
            pnl = closed * (price - holding.avg_entry_price) * direction * multiplier
            self._realized[symbol] = self._realized.get(symbol, ZERO) + pnl
            if new * old < 0:  # flipped through zero: what is left was opened at this price
                holding.avg_entry_price = price
        if new == 0:
            del self._positions[symbol]
        else:
            holding.qty = new

    def _position(self, symbol: str) -> Position:
        holding = self._positions[symbol]
        return Position(
            symbol=symbol,
            asset_class=holding.asset_class,
            qty=holding.qty,
            avg_entry_price=holding.avg_entry_price,
            current_price=self._marks[symbol],
            lastday_price=self._day_marks.get(symbol),
        )

    def _held(self, symbol: str) -> Decimal:
        holding = self._positions.get(symbol)
        return holding.qty if holding is not None else ZERO

    def _market_values(self) -> tuple[Decimal, Decimal]:
        long_mv = short_mv = ZERO
        for symbol, holding in self._positions.items():
            value = holding.qty * self._marks[symbol] * contract_multiplier(holding.asset_class)
            if value >= 0:
                long_mv += value
            else:
                short_mv += value
        return long_mv, short_mv

    def _equity(self) -> Decimal:
        long_mv, short_mv = self._market_values()
        return self._cash + long_mv + short_mv

    def _buying_power(self, exclude: str | None = None) -> Decimal:
        return max(ZERO, self._buying_power_raw(exclude))

    def _buying_power_raw(self, exclude: str | None = None) -> Decimal:
        long_mv, short_mv = self._market_values()
        equity = self._cash + long_mv + short_mv
        reserved = sum(
            (
                self._margin_cost(rec.order)
                for rec in self._open.values()
                if rec.order.status is not OrderStatus.HELD and rec.order.id != exclude
            ),
            ZERO,
        )
        if self.futures:
            return equity - self._position_margin() - reserved
        return MARGIN_MULTIPLIER * equity - (long_mv - short_mv) - reserved

    def _spot_crypto(self, asset_class: AssetClass) -> bool:
        """Crypto held as coins (no shorting); in futures mode crypto is a contract."""
        return asset_class is AssetClass.CRYPTO and not self.futures

    def _margin_cost(self, order: Order) -> Decimal:
        """What an order ties up: its opening cost, over the symbol's leverage in futures mode."""
        cost = self._opening_cost(order)
        return cost / self.get_leverage(order.symbol) if self.futures else cost

    def _position_margin(self) -> Decimal:
        """Futures: initial margin of the open positions, |notional| / leverage each."""
        return sum(
            (
                abs(h.qty * self._marks[symbol] * contract_multiplier(h.asset_class)) / self.get_leverage(symbol)
                for symbol, h in self._positions.items()
            ),
            ZERO,
        )

    def _opening_cost(self, order: Order) -> Decimal:
        """What the order would add to gross exposure at its reference price: the part that
        closes an existing position costs nothing."""
        price = self._reference_price(order)
        if price is None:
            return ZERO
        opening = self._opening_qty(order.symbol, order.side, self._order_qty(order, price))
        return opening * price * contract_multiplier(order.asset_class)

    def _reference_price(self, order: Order) -> Decimal | None:
        if order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            return order.limit_price
        if order.type in (OrderType.STOP, OrderType.TRAILING_STOP):
            return order.stop_price
        return self._marks.get(order.symbol)

    def _opening_qty(self, symbol: str, side: Side, qty: Decimal) -> Decimal:
        held = self._held(symbol)
        if held * side.sign < 0:  # the order works against the position: it closes first
            return max(ZERO, qty - abs(held))
        return qty

    @staticmethod
    def _order_qty(order: Order, price: Decimal | None) -> Decimal:
        if order.qty is not None:
            return order.qty
        if price is None:
            return ZERO
        qty = (order.notional / price).quantize(QTY_QUANTUM, rounding=ROUND_DOWN)
        if qty <= 0:
            raise OrderRejected("notional is too small for one unit at the current price")
        return qty

    # -----------------------------------------------------------------------------------
    # Copies out

    def _record(self, order_id: str) -> _Record:
        rec = self._records.get(order_id)
        if rec is None:
            raise NotFound(f"order not found: {_shown(order_id)}")
        return rec

    @staticmethod
    def _copy(rec: _Record, *, nested: bool) -> Order:
        legs = [replace(leg.order, legs=[]) for leg in rec.legs] if nested else []
        return replace(rec.order, legs=legs)


# ---------------------------------------------------------------------------------------
# Helpers


def _stop_hit(order: Order, mark: Decimal) -> bool:
    if order.stop_price is None:
        return False
    rising = (order.side is Side.BUY) != order.profit_trigger  # a take-profit fires the other way
    return mark >= order.stop_price if rising else mark <= order.stop_price


def _trail_active(order: Order, mark: Decimal) -> bool:
    """A trailing stop with an activation price trails once the price has reached it (a sell
    trails from a rise to it, a buy from a fall to it); it stays active after."""
    if order.activation_price is None or order.hwm is not None:
        return True
    return mark >= order.activation_price if order.side is Side.SELL else mark <= order.activation_price


def _limit_crossed(order: Order, mark: Decimal) -> bool:
    return mark <= order.limit_price if order.side is Side.BUY else mark >= order.limit_price


def _positive(value: object, name: str, maximum: Decimal) -> Decimal:
    return parse_decimal(value, name, maximum=maximum)


def _positive_or_none(value: object, name: str, maximum: Decimal) -> Decimal | None:
    return None if value is None else parse_decimal(value, name, maximum=maximum)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def _next_weekday_time(now: datetime, at: time) -> datetime:
    now = _aware(now)
    day = now.astimezone(timezone.utc).date()
    while True:
        candidate = datetime.combine(day, at)
        if candidate > now and candidate.weekday() < 5:
            return candidate
        day += timedelta(days=1)


def _shown(value: object) -> str:
    """Untrusted text for an error message: plain when it looks like a symbol or id, otherwise
    repr'd (so control characters show as escapes), and always cut short."""
    if isinstance(value, str) and _PLAIN.match(value):
        return value
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _http_status(exc: GatewayError) -> int:
    return {"not_found": 404, "insufficient_funds": 403, "order_rejected": 422, "invalid": 422}.get(exc.kind, 500)


__all__ = ["DEFAULT_FUTURES_LEVERAGE", "DEFAULT_MARKS", "FUTURES_MARKS", "MARGIN_MULTIPLIER", "PaperEngine"]
