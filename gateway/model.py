"""The one internal model every dialect parses into and every venue answers in.

Money and quantities are ``Decimal`` everywhere; wire formats convert at the edge
(``gateway.wire``). Intents are frozen: once the risk engine has decided on one, nothing
downstream can change what was decided.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AssetClass(str, enum.Enum):
    US_EQUITY = "us_equity"
    CRYPTO = "crypto"
    US_OPTION = "us_option"


class Side(str, enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, enum.Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(str, enum.Enum):
    DAY = "day"
    GTC = "gtc"
    OPG = "opg"
    CLS = "cls"
    IOC = "ioc"
    FOK = "fok"


class OrderClass(str, enum.Enum):
    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"


class OrderStatus(str, enum.Enum):
    NEW = "new"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    REJECTED = "rejected"
    HELD = "held"  # a bracket's child leg waiting for its parent to fill
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATUSES


_OPEN_STATUSES = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.ACCEPTED,
        OrderStatus.PENDING_NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.HELD,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
    }
)


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"
    LOCKED = "LOCKED"


# ---------------------------------------------------------------------------------------
# Symbols

_OCC = re.compile(r"^(?P<root>[A-Z]{1,6})(?P<yy>\d{2})(?P<mm>\d{2})(?P<dd>\d{2})(?P<cp>[CP])(?P<strike>\d{8})$")
_EQUITY = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_CRYPTO = re.compile(r"^[A-Z0-9]{2,10}/[A-Z0-9]{2,10}$")


@dataclass(frozen=True, slots=True)
class OptionContract:
    """An OCC option symbol, parsed: root, expiry, call/put and strike (strike x1000 on the wire)."""

    root: str
    expiry: date
    is_call: bool
    strike: Decimal


def parse_occ(symbol: str) -> OptionContract | None:
    m = _OCC.match(symbol)
    if not m:
        return None
    try:
        expiry = date(2000 + int(m["yy"]), int(m["mm"]), int(m["dd"]))
    except ValueError:
        return None
    return OptionContract(m["root"], expiry, m["cp"] == "C", Decimal(m["strike"]) / 1000)


def classify_symbol(symbol: str) -> AssetClass | None:
    """Asset class from the symbol's shape alone, or None when it fits no known shape."""
    if _CRYPTO.match(symbol):
        return AssetClass.CRYPTO
    if parse_occ(symbol) is not None:
        return AssetClass.US_OPTION
    if _EQUITY.match(symbol):
        return AssetClass.US_EQUITY
    return None


def contract_multiplier(asset_class: AssetClass) -> Decimal:
    """Units of the underlying per unit of quantity: one option contract covers 100 shares."""
    return Decimal(100) if asset_class is AssetClass.US_OPTION else Decimal(1)


# ---------------------------------------------------------------------------------------
# Orders


@dataclass(frozen=True, slots=True)
class TakeProfit:
    limit_price: Decimal


@dataclass(frozen=True, slots=True)
class StopLoss:
    stop_price: Decimal
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a bot asked for, validated and normalised by its dialect; nothing here is trusted yet.

    Exactly one of ``qty`` and ``notional`` is set (dialects enforce it). ``asset_class`` is the
    symbol's class as resolved by the dialect.
    """

    symbol: str
    asset_class: AssetClass
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    client_order_id: str | None = None
    extended_hours: bool = False
    # Binance-style flag: the bot promises the order only reduces; the gateway still verifies it.
    reduce_only: bool = False
    # A limit order that must rest (Binance GTX / postOnly): expired, never filled, if it would take.
    post_only: bool = False
    # Binance TAKE_PROFIT(_MARKET): a stop (STOP / STOP_LIMIT) whose trigger fires as the price
    # moves in the order's favour (a sell at or above stop_price, a buy at or below), not against it.
    profit_trigger: bool = False
    # Binance closePosition: when triggered, the order closes whatever position there is (never
    # opens one). The dialect sets ``qty`` to the position when the order is placed, so it is
    # judged (as an exit) for what it closes.
    close_position: bool = False
    # A trailing stop starts trailing only once the price reaches this (Binance activatePrice).
    activation_price: Decimal | None = None


def describes(intent: OrderIntent, order: object) -> bool:
    """``order`` (a venue's Order, or the ledger's record of one) is the order ``intent``
    describes: a retry of it, not another order under the same client id."""
    return (
        getattr(order, "symbol", None) == intent.symbol
        and getattr(order, "side", None) is intent.side
        and getattr(order, "type", None) is intent.type
        and getattr(order, "qty", None) == intent.qty
        and getattr(order, "notional", None) == intent.notional
        and getattr(order, "limit_price", None) == intent.limit_price
        and getattr(order, "stop_price", None) == intent.stop_price
    )


@dataclass(frozen=True, slots=True)
class OrderReplace:
    """A change to an open order (Alpaca PATCH). Unset fields keep the order's value."""

    qty: Decimal | None = None
    time_in_force: TimeInForce | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Filters for listing orders (Alpaca GET /v2/orders)."""

    status: str = "open"  # open | closed | all
    limit: int = 50
    after: datetime | None = None
    until: datetime | None = None
    direction: str = "desc"  # asc | desc
    nested: bool = False
    symbols: tuple[str, ...] = ()
    side: Side | None = None


@dataclass(slots=True)
class Order:
    """An order as the venue knows it."""

    id: str
    client_order_id: str
    symbol: str
    asset_class: AssetClass
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime
    qty: Decimal | None = None
    notional: Decimal | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    legs: list["Order"] = field(default_factory=list)
    extended_hours: bool = False
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    # Set by the gateway when a rule clamped the order: what was asked, what was sent, and why.
    gateway_note: str | None = None
    post_only: bool = False  # see OrderIntent for these four
    profit_trigger: bool = False
    close_position: bool = False
    activation_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    asset_class: AssetClass
    qty: Decimal  # signed: negative is short
    avg_entry_price: Decimal
    current_price: Decimal
    lastday_price: Decimal | None = None

    @property
    def side(self) -> str:
        return "long" if self.qty >= 0 else "short"

    @property
    def multiplier(self) -> Decimal:
        return contract_multiplier(self.asset_class)

    @property
    def market_value(self) -> Decimal:
        return self.qty * self.current_price * self.multiplier

    @property
    def cost_basis(self) -> Decimal:
        return self.qty * self.avg_entry_price * self.multiplier

    @property
    def unrealized_pl(self) -> Decimal:
        return self.market_value - self.cost_basis


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    equity: Decimal
    cash: Decimal
    buying_power: Decimal
    long_market_value: Decimal
    short_market_value: Decimal
    last_equity: Decimal
    currency: str = "USD"
    status: str = "ACTIVE"
    multiplier: Decimal = Decimal(1)
    initial_margin: Decimal = Decimal(0)
    maintenance_margin: Decimal = Decimal(0)
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Clock:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True, slots=True)
class Asset:
    id: str
    symbol: str
    asset_class: AssetClass
    name: str
    exchange: str
    tradable: bool = True
    marginable: bool = True
    shortable: bool = True
    easy_to_borrow: bool = True
    fractionable: bool = True
    status: str = "active"


@dataclass(frozen=True, slots=True)
class BulkResult:
    """One row of a multi-status answer (Alpaca's 207 for cancel-all / close-all)."""

    id: str  # order id, or symbol for close-all
    status: int  # HTTP status of this row
    order: Order | None = None
    message: str | None = None


# ---------------------------------------------------------------------------------------
# Decisions


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: a stable code plus the numbers a human needs to see why."""

    code: str
    message: str
    limit: Decimal | None = None
    value: Decimal | None = None
    # The largest quantity that would have passed this rule (for on_violation: clamp).
    max_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    violations: tuple[Violation, ...] = ()
    policy_version: int = 0
    policy_hash: str = ""
    # When a rule clamped the order: the quantity actually allowed, and why.
    clamped_qty: Decimal | None = None
    notes: tuple[str, ...] = ()
    reduces_only: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v.code for v in self.violations)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as authenticated by a dialect."""

    key_id: str
    dialect: str
    remote: str | None = None
    # Optional signal confidence the bot attached to the request (see min_signal_confidence).
    confidence: Decimal | None = None


# ---------------------------------------------------------------------------------------
# Venue events: what a broker's own stream says happened to an order or the account.


class OrderEventType(str, enum.Enum):
    """Alpaca's ``trade_updates`` event names; Binance's execution types map onto them."""

    NEW = "new"
    PENDING_NEW = "pending_new"
    ACCEPTED = "accepted"
    FILL = "fill"
    PARTIAL_FILL = "partial_fill"
    CANCELED = "canceled"
    EXPIRED = "expired"
    DONE_FOR_DAY = "done_for_day"
    REPLACED = "replaced"
    REJECTED = "rejected"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    # A stop-limit whose stop was hit, or an OTO/bracket leg released by its parent's fill.
    TRIGGERED = "triggered"


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One change to one order, as the venue's event stream reports it.

    ``order`` is the order as it stands after the change (legs included when the venue sends
    them). For fills, ``qty``/``price`` are this execution's and ``position_qty`` is the signed
    position after it, when the venue says.
    """

    event: OrderEventType
    order: Order
    at: datetime
    qty: Decimal | None = None
    price: Decimal | None = None
    position_qty: Decimal | None = None
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """The venue's word on one position (Binance ACCOUNT_UPDATE); qty is signed."""

    symbol: str
    asset_class: AssetClass
    qty: Decimal
    entry_price: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """The venue's event stream came up (the ledger must reconcile: events may have been
    missed while it was down) or went down (the ledger stops trusting it until it is back)."""

    connected: bool
    at: datetime
    reason: str = ""


VenueEvent = OrderUpdate | PositionUpdate | StreamStatus
