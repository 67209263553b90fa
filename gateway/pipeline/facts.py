"""Market facts an order is judged on: what the symbol is, its reference price, and the venue's
leverage setting for it. Each is cached so the gateway's own upstream traffic stays small."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

from ..errors import GatewayError, NotFound
from ..model import Asset, AssetClass, Caller, Violation, classify_symbol
from ..ports import Venue
from ..risk.engine import PolicyLike
from ..risk.portfolio import Portfolio

log = logging.getLogger("gateway.pipeline.facts")

UNKNOWN_TTL_S = 30.0  # how long a symbol the venue did not know is refused without asking again


class MarketFacts:
    def __init__(
        self,
        venue: Venue,
        book: Portfolio,
        policy: Callable[[], PolicyLike | None],
        audit: Callable[[str, Caller | None, dict], Awaitable[None]],
        *,
        price_ttl_s: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.venue = venue
        self.book = book
        self.policy = policy
        self.audit = audit
        self.price_ttl_s = price_ttl_s
        self.monotonic = monotonic
        self._prices: dict[str, tuple[Decimal, float]] = {}
        self._assets: dict[str, Asset] = {}
        self._unknown: dict[str, float] = {}  # symbol -> monotonic time until which it is unknown
        self._leverage_checked: set[tuple[str, str]] = set()

    async def unknown_symbol(self, symbol: str, asset_class: AssetClass) -> Violation | None:
        """The venue's asset record is the authority on what a symbol is. A spelling the venue
        maps to another symbol (Alpaca accepts BTCUSD for BTC/USD) or another asset class is
        refused: counted under a second name it would get a second set of limits."""
        asset = self._assets.get(symbol)
        if asset is None:
            unknown_until = self._unknown.get(symbol)
            if unknown_until is not None and self.monotonic() < unknown_until:
                return Violation("unknown_symbol", f"unknown_symbol: the venue does not know {symbol}")
            try:
                asset = await self.venue.get_asset(symbol)
            except NotFound:
                # Remembered for a while: a bot retrying a bad symbol must not spend the
                # account's request budget on it.
                self._unknown[symbol] = self.monotonic() + UNKNOWN_TTL_S
                return Violation("unknown_symbol", f"unknown_symbol: the venue does not know {symbol}")
            except GatewayError:
                return None  # the price lookup fails closed if the venue is unreachable
            if not asset.tradable:
                return Violation("unknown_symbol", f"unknown_symbol: {symbol} is not tradable at the venue")
            self._assets[symbol] = asset
        if asset.symbol != symbol or asset.asset_class is not asset_class:
            return Violation(
                "unknown_symbol",
                f"unknown_symbol: the venue trades {symbol} as {asset.symbol} ({asset.asset_class.value}); "
                f"send {asset.symbol}",
            )
        return None

    async def reference_price(self, symbol: str, asset_class: AssetClass) -> Decimal | None:
        now = self.monotonic()
        cached = self._prices.get(symbol)
        if cached is not None and now - cached[1] <= self.price_ttl_s:
            return cached[0]
        try:
            price = await self.venue.latest_price(symbol, asset_class)
        except GatewayError:
            return None
        self.observe_price(symbol, asset_class, price, now)
        return price

    def observe_price(self, symbol: str, asset_class: AssetClass, price: Decimal, now: float | None = None) -> None:
        """A fresh price from anywhere (a lookup, a fill): cached, and the book's mark moves."""
        self._prices[symbol] = (price, self.monotonic() if now is None else now)
        self.book.update_mark(symbol, asset_class, price)

    async def enforce_leverage(self, caller: Caller, symbol: str, asset_class: AssetClass) -> Violation | None:
        """The venue's own leverage setting must never exceed the policy: exchanges default
        high (Binance: 20x). Checked before the first order in a symbol and after every policy
        change; lowered to the ceiling when above it; an unverifiable setting refuses the order."""
        policy = self.policy()
        if policy is None:
            return None  # the engine refuses with no_policy
        key = (symbol, policy.sha256)
        if key in self._leverage_checked:
            return None
        limit = leverage_limit(policy, asset_class)[0]
        try:
            current = await self.venue.get_leverage(symbol)
            if limit is not None and current > limit:
                lowered = await self.venue.set_leverage(symbol, max(1, int(limit)))
                await self.audit(
                    "leverage.enforced", caller, {"symbol": symbol, "was": current, "now": lowered, "limit": limit}
                )
                current = lowered
        except GatewayError as exc:
            return Violation(
                "leverage_unverified",
                f"leverage_unverified: could not confirm {symbol}'s leverage at the venue is within {limit}x ({exc.kind})",
            )
        self.book.set_leverage(symbol, asset_class, Decimal(current))
        self._leverage_checked.add(key)
        return None


def asset_class_of(symbol: str) -> AssetClass:
    return classify_symbol(symbol) or AssetClass.CRYPTO


def leverage_limit(policy: PolicyLike | None, asset_class: AssetClass) -> tuple[Decimal | None, str, str]:
    """The tightest leverage ceiling for a symbol: the account's, and its asset class's when the
    policy has one. Returns (limit, rail name, on_violation)."""
    if policy is None:
        return None, "", "reject"
    rails = policy.policy.rails()
    best: tuple[Decimal | None, str, str] = (None, "", "reject")
    for name in ("account.max_leverage", f"asset_classes.{asset_class.value}.leverage"):
        rail = rails.get(name)
        if rail is not None and rail.active and (best[0] is None or rail.limit < best[0]):
            best = (rail.limit, name, rail.on_violation)
    return best
