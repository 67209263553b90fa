"""The interfaces the core depends on: the upstream ``Venue`` (with its capabilities and event
stream), the bot-facing ``Backend`` dialects serve, and the ``Authenticator``.

``Venue`` is what the gateway calls upstream (paper engine, Alpaca over HTTP, ccxt).
``Backend`` is what a dialect calls for an authenticated bot: the same operations plus the
``Caller``. The gateway's risk pipeline is a Backend in front of a Venue; the standalone paper
broker is ``DirectBackend`` in front of the paper venue. So one dialect serves both.

Errors are ``gateway.errors`` exceptions; venues translate their upstream's errors into them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .errors import OrderRejected, Unauthorized
from .model import (
    Account,
    Asset,
    AssetClass,
    BulkResult,
    Caller,
    Clock,
    Order,
    OrderClass,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    Position,
    VenueEvent,
)


@dataclass(frozen=True, slots=True)
class TradingRules:
    """One tradable symbol and the venue's order rules for it, as far as the venue says (None:
    no such rule, or unknown). Served to bots that must round to them (Binance exchangeInfo)."""

    asset: Asset
    tick_size: Decimal | None = None  # price increment
    step_size: Decimal | None = None  # quantity increment
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    min_notional: Decimal | None = None
    max_leverage: int | None = None  # the venue's own ceiling (the policy's may be lower)


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    """What a venue does natively, so the gateway never guesses (and refuses what it cannot do
    instead of silently emulating it against a real account).

    - ``order_classes``: classes whose legs the venue carries natively, per asset class
      (Alpaca: bracket/OTO/OCO on whole-share equities only; crypto simple only).
    - ``amend``: the venue replaces an open order in place (Alpaca PATCH, Binance PUT);
      otherwise a replace is cancel + new.
    - ``reduce_only``: the venue enforces reduce-only / closePosition orders (Binance), so a
      gateway stop can never open a position there.
    - ``held_for_orders``: an open sell holds the shares it would sell (Alpaca); a second sell
      of held shares is refused by the venue.
    - ``event_stream``: the venue pushes order events (``subscribe``); without it the ledger
      relies on reconcile alone.
    - ``environment``: ``paper`` (simulated), ``sandbox`` (the broker's test account) or
      ``live`` (real money).
    - ``rate_limit_per_min``: the account's request budget (Alpaca 200 requests; Binance 2,400
      weight), shared by the gateway and every bot behind it.
    - ``open_orders_page``: the most open orders one list call returns (paging beyond).
    """

    order_classes: Mapping[AssetClass, frozenset[OrderClass]] = field(default_factory=dict)
    amend: bool = True
    reduce_only: bool = False
    held_for_orders: bool = False
    event_stream: bool = False
    environment: str = "paper"
    rate_limit_per_min: int | None = None
    open_orders_page: int = 500

    def native_legs(self, asset_class: AssetClass, order_class: OrderClass) -> bool:
        return order_class is OrderClass.SIMPLE or order_class in self.order_classes.get(asset_class, frozenset())


EventSink = Callable[[VenueEvent], None]


class Venue(ABC):
    """One upstream trading account."""

    name: str = "venue"
    capabilities: VenueCapabilities = VenueCapabilities()

    def subscribe(self, sink: EventSink) -> None:
        """Deliver the venue's order and account events to ``sink`` (synchronously, in event
        order, on the event loop). A venue without a stream never calls it; one with a stream
        sends ``StreamStatus(connected=True)`` whenever it (re)connects."""
        sinks = self.__dict__.setdefault("_event_sinks", [])
        sinks.append(sink)

    def _publish(self, event: VenueEvent) -> None:
        for sink in self.__dict__.get("_event_sinks", ()):
            sink(event)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open sessions, load markets. Called once before any other call."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions. Idempotent."""

    @abstractmethod
    async def get_account(self) -> Account: ...

    @abstractmethod
    async def list_positions(self) -> list[Position]: ...

    @abstractmethod
    async def get_position(self, symbol: str) -> Position:
        """Raises NotFound when there is no open position in ``symbol``."""

    @abstractmethod
    async def close_position(
        self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        """Market order that reduces the position by qty, by percentage, or entirely."""

    @abstractmethod
    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]: ...

    @abstractmethod
    async def submit_order(self, intent: OrderIntent) -> Order:
        """Submit. Must be idempotent on ``intent.client_order_id``: a second submit with the
        same id returns the existing order (or raises OrderRejected), never a second order."""

    @abstractmethod
    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        """Returns the new order; the old one becomes ``replaced``."""

    @abstractmethod
    async def cancel_order(self, order_id: str) -> None: ...

    @abstractmethod
    async def cancel_all_orders(self) -> list[BulkResult]: ...

    @abstractmethod
    async def get_order(self, order_id: str, nested: bool = False) -> Order: ...

    @abstractmethod
    async def get_order_by_client_id(self, client_order_id: str) -> Order: ...

    @abstractmethod
    async def list_orders(self, query: OrderQuery) -> list[Order]: ...

    @abstractmethod
    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        """Reference price (last trade or mark). Raises NotFound when the venue has none."""

    @abstractmethod
    async def get_clock(self) -> Clock: ...

    @abstractmethod
    async def get_asset(self, symbol: str) -> Asset:
        """Raises NotFound for an unknown symbol."""

    # Margin venues (futures). Cash venues keep the defaults: 1x, and no changes accepted.

    async def get_leverage(self, symbol: str) -> int:
        return 1

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        """Set the symbol's leverage; returns the leverage now in force. A cash venue is always
        1x: asking for 1x is answered, anything else is refused."""
        if leverage == 1:
            return 1
        raise OrderRejected(f"{self.name} does not support leverage settings")

    async def set_margin_mode(self, symbol: str, mode: str) -> None:
        """``isolated`` or ``cross``."""
        raise OrderRejected(f"{self.name} does not support margin modes")

    async def get_margin_mode(self, symbol: str) -> str:
        return "cross"

    async def list_markets(self) -> list[TradingRules]:
        """Every symbol the venue trades, with its order rules. Empty when the venue cannot list
        them (a dialect that needs the list then serves none)."""
        return []


class Backend(ABC):
    """What a dialect serves to an authenticated caller."""

    @abstractmethod
    async def get_account(self, caller: Caller) -> Account: ...

    @abstractmethod
    async def list_positions(self, caller: Caller) -> list[Position]: ...

    @abstractmethod
    async def get_position(self, caller: Caller, symbol: str) -> Position: ...

    @abstractmethod
    async def close_position(
        self, caller: Caller, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order: ...

    @abstractmethod
    async def close_all_positions(self, caller: Caller, cancel_orders: bool = False) -> list[BulkResult]: ...

    @abstractmethod
    async def submit_order(self, caller: Caller, intent: OrderIntent) -> Order: ...

    @abstractmethod
    async def replace_order(self, caller: Caller, order_id: str, change: OrderReplace) -> Order: ...

    @abstractmethod
    async def cancel_order(self, caller: Caller, order_id: str) -> None: ...

    @abstractmethod
    async def cancel_all_orders(self, caller: Caller) -> list[BulkResult]: ...

    @abstractmethod
    async def get_order(self, caller: Caller, order_id: str, nested: bool = False) -> Order: ...

    @abstractmethod
    async def get_order_by_client_id(self, caller: Caller, client_order_id: str) -> Order: ...

    @abstractmethod
    async def list_orders(self, caller: Caller, query: OrderQuery) -> list[Order]: ...

    @abstractmethod
    async def latest_price(self, caller: Caller, symbol: str, asset_class: AssetClass) -> Decimal: ...

    @abstractmethod
    async def get_clock(self, caller: Caller) -> Clock: ...

    @abstractmethod
    async def get_asset(self, caller: Caller, symbol: str) -> Asset: ...

    # Margin (futures) operations; a backend that has no margin venue refuses them.

    async def get_leverage(self, caller: Caller, symbol: str) -> int:
        return 1

    async def set_leverage(self, caller: Caller, symbol: str, leverage: int) -> int:
        raise OrderRejected("leverage settings are not supported here")

    async def set_margin_mode(self, caller: Caller, symbol: str, mode: str) -> None:
        raise OrderRejected("margin modes are not supported here")

    # Reads added for the Binance dialect. A backend in front of one venue (``self.venue``) passes
    # them through by default, so the answers never depend on a subclass remembering to.

    async def get_margin_mode(self, caller: Caller, symbol: str) -> str:
        venue = getattr(self, "venue", None)
        return await venue.get_margin_mode(symbol) if isinstance(venue, Venue) else "cross"

    async def list_markets(self, caller: Caller) -> list[TradingRules]:
        venue = getattr(self, "venue", None)
        return await venue.list_markets() if isinstance(venue, Venue) else []

    async def leverage_limit(self, caller: Caller, symbol: str) -> Decimal | None:
        """The highest leverage this caller may set for ``symbol`` (None: no limit besides the
        venue's). Dialects advertise it (Binance leverageBracket), so a bot that reads "the
        maximum available leverage" reads the policy's."""
        return None


class DirectBackend(Backend):
    """A venue served as-is, no risk checks: the standalone paper broker."""

    def __init__(self, venue: Venue):
        self.venue = venue

    async def get_account(self, caller):
        return await self.venue.get_account()

    async def list_positions(self, caller):
        return await self.venue.list_positions()

    async def get_position(self, caller, symbol):
        return await self.venue.get_position(symbol)

    async def close_position(self, caller, symbol, qty=None, percentage=None):
        return await self.venue.close_position(symbol, qty, percentage)

    async def close_all_positions(self, caller, cancel_orders=False):
        return await self.venue.close_all_positions(cancel_orders)

    async def submit_order(self, caller, intent):
        return await self.venue.submit_order(intent)

    async def replace_order(self, caller, order_id, change):
        return await self.venue.replace_order(order_id, change)

    async def cancel_order(self, caller, order_id):
        return await self.venue.cancel_order(order_id)

    async def cancel_all_orders(self, caller):
        return await self.venue.cancel_all_orders()

    async def get_order(self, caller, order_id, nested=False):
        return await self.venue.get_order(order_id, nested)

    async def get_order_by_client_id(self, caller, client_order_id):
        return await self.venue.get_order_by_client_id(client_order_id)

    async def list_orders(self, caller, query):
        return await self.venue.list_orders(query)

    async def latest_price(self, caller, symbol, asset_class):
        return await self.venue.latest_price(symbol, asset_class)

    async def get_clock(self, caller):
        return await self.venue.get_clock()

    async def get_asset(self, caller, symbol):
        return await self.venue.get_asset(symbol)

    async def get_leverage(self, caller, symbol):
        return await self.venue.get_leverage(symbol)

    async def set_leverage(self, caller, symbol, leverage):
        return await self.venue.set_leverage(symbol, leverage)

    async def set_margin_mode(self, caller, symbol, mode):
        return await self.venue.set_margin_mode(symbol, mode)

    async def get_margin_mode(self, caller, symbol):
        return await self.venue.get_margin_mode(symbol)

    async def list_markets(self, caller):
        return await self.venue.list_markets()


class Authenticator(ABC):
    """How a dialect checks a bot's credential. Implementations compare in constant time."""

    @abstractmethod
    def authenticate(self, key_id: str, secret: str, dialect: str, remote: str | None) -> Caller:
        """Raises Unauthorized (never saying which part was wrong)."""

    @abstractmethod
    def hmac_secret(self, key_id: str, dialect: str, remote: str | None) -> tuple[bytes, Caller]:
        """For signature dialects (Binance): the shared secret to verify an HMAC with, and the
        caller it stands for. Raises Unauthorized for an unknown, revoked or expired key."""

    def verify_signed(
        self, key_id: str, dialect: str, remote: str | None, signed_with: Callable[[bytes], bool]
    ) -> Caller:
        """A signed request's caller: ``signed_with(secret)`` says whether the request was signed
        with the credential's secret. Implementations that keep revoked credentials check the
        signature BEFORE the credential's standing, so naming a revoked key is not proof of
        holding it. Raises Unauthorized."""
        secret, caller = self.hmac_secret(key_id, dialect, remote)
        if not signed_with(secret):
            self.record_failure(caller.key_id, remote, "bad request signature")
            raise Unauthorized("invalid credentials")
        return caller

    def record_failure(self, key_id: str, remote: str | None, reason: str) -> None:
        """A failure the dialect found itself (a replayed signature): count it, report it."""
