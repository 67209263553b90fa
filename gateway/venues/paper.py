"""The ``paper`` venue: the embedded simulated broker behind the ``Venue`` interface.

Every call is a thin ``async`` wrapper over ``PaperEngine``; the engine is synchronous and does no
I/O, so nothing here awaits anything. The engine already returns copies, so callers can never
mutate its book through what they get back.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from ..model import (
    Account,
    Asset,
    AssetClass,
    BulkResult,
    Clock,
    Order,
    OrderIntent,
    OrderQuery,
    OrderReplace,
    Position,
)
from .base import Venue
from .paper_engine import PaperEngine


class PaperVenue(Venue):
    name = "paper"

    def __init__(
        self,
        engine: PaperEngine | None = None,
        *,
        starting_equity: Decimal = Decimal("100000"),
        seed_marks: bool = False,
    ):
        """Wrap ``engine``, or a fresh engine with ``starting_equity`` (and, with ``seed_marks``,
        the engine's DEFAULT_MARKS) when none is given."""
        if engine is None:
            engine = PaperEngine(starting_equity=starting_equity, seed_marks=seed_marks)
        self.engine = engine

    async def start(self) -> None:
        """Nothing to open: the engine lives in this process."""

    async def close(self) -> None:
        """Nothing to release."""

    # Prices: not part of Venue; the standalone paper broker's POST /_paper/prices uses it.
    async def set_prices(self, prices: Mapping[str, object]) -> None:
        self.engine.set_prices(prices)

    async def get_account(self) -> Account:
        return self.engine.get_account()

    async def list_positions(self) -> list[Position]:
        return self.engine.list_positions()

    async def get_position(self, symbol: str) -> Position:
        return self.engine.get_position(symbol)

    async def close_position(
        self, symbol: str, qty: Decimal | None = None, percentage: Decimal | None = None
    ) -> Order:
        return self.engine.close_position(symbol, qty, percentage)

    async def close_all_positions(self, cancel_orders: bool = False) -> list[BulkResult]:
        return self.engine.close_all_positions(cancel_orders)

    async def submit_order(self, intent: OrderIntent) -> Order:
        return self.engine.submit_order(intent)

    async def replace_order(self, order_id: str, change: OrderReplace) -> Order:
        return self.engine.replace_order(order_id, change)

    async def cancel_order(self, order_id: str) -> None:
        self.engine.cancel_order(order_id)

    async def cancel_all_orders(self) -> list[BulkResult]:
        return self.engine.cancel_all_orders()

    async def get_order(self, order_id: str, nested: bool = False) -> Order:
        return self.engine.get_order(order_id, nested)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        return self.engine.get_order_by_client_id(client_order_id)

    async def list_orders(self, query: OrderQuery) -> list[Order]:
        return self.engine.list_orders(query)

    async def latest_price(self, symbol: str, asset_class: AssetClass) -> Decimal:
        return self.engine.latest_price(symbol, asset_class)

    async def get_clock(self) -> Clock:
        return self.engine.get_clock()

    async def get_asset(self, symbol: str) -> Asset:
        return self.engine.get_asset(symbol)
