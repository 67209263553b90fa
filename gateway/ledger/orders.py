"""One order the ledger knows: what was decided, what the venue says, what the book counts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

from ..model import (
    AssetClass,
    Order,
    OrderClass,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    StopLoss,
    TimeInForce,
    contract_multiplier,
)
from ..risk.portfolio import Counted

ZERO = Decimal(0)


class Role(str, enum.Enum):
    """Why the order exists; decides how it counts toward the bot's exit capacity."""

    ENTRY = "entry"  # opens or grows a position (or goes beyond the position: judged in full)
    EXIT = "exit"  # the bot's order that only closes (within exit capacity when decided)
    PROTECTIVE = "protective"  # the gateway's own stop, sized to the position
    FOREIGN = "foreign"  # found at the venue, not forwarded by this gateway: counted as an entry


class Phase(str, enum.Enum):
    """Where the order is in the gateway's hands."""

    DECIDED = "decided"  # allowed and recorded; on its way to the venue
    UNCERTAIN = "uncertain"  # sent, but the answer did not say whether the venue has it
    LIVE = "live"  # the venue has it (its status says whether it is still open)
    DONE = "done"  # closed: filled, canceled, expired, replaced, rejected, or proven absent


@dataclass(slots=True, eq=False)
class LedgerOrder:
    client_order_id: str
    symbol: str
    asset_class: AssetClass
    side: Side
    type: OrderType
    role: Role
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    time_in_force: TimeInForce = TimeInForce.DAY
    order_class: OrderClass = OrderClass.SIMPLE
    key_id: str | None = None
    venue_id: str | None = None
    phase: Phase = Phase.DECIDED
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_qty: Decimal = ZERO
    filled_avg_price: Decimal | None = None
    parent: "LedgerOrder | None" = None
    legs: list["LedgerOrder"] = field(default_factory=list)
    replaces: str | None = None  # client id of the order this one replaces
    replaced_by: str | None = None
    valuation: Decimal = ZERO  # price the unfilled quantity is valued at (worst of mark and own prices)
    counted: Counted | None = None  # what the book holds for it right now
    suspended: bool = False  # taken out of the book while its replacement is judged
    gateway_stop: StopLoss | None = None  # the stop the gateway places once this entry fills
    epoch: int = 0  # ledger epoch of its last change (a snapshot older than this cannot overrule it)

    @property
    def is_open(self) -> bool:
        """Still able to trade: in flight, uncertain (fail closed) or open at the venue."""
        if self.phase in (Phase.DECIDED, Phase.UNCERTAIN):
            return True
        return self.phase is Phase.LIVE and self.status.is_open

    @property
    def remaining(self) -> Decimal:
        """Unfilled quantity (a notional order's is its notional at the valuation price)."""
        if self.qty is not None:
            return max(ZERO, self.qty - self.filled_qty)
        if self.notional is None or self.valuation <= 0:
            return ZERO
        filled_value = self.filled_qty * (self.filled_avg_price or self.valuation)
        return max(ZERO, (self.notional - filled_value) / self.valuation)

    @property
    def unfilled_parent(self) -> Decimal:
        """For a leg: what its parent has yet to fill. The leg can only close what the parent
        opens, so that much of it is not exposure (an OTO stop of 10 under a buy of 10: none)."""
        parent = self.parent
        return parent.remaining if parent is not None and parent.is_open else ZERO

    def one_cancels_other(self) -> list["LedgerOrder"]:
        """The orders of which at most one can fill: a bracket's exit legs, or an OCO's two
        halves. Empty for everything else (an OTO's single leg is a lone exit)."""
        if self.order_class is OrderClass.OCO:
            top = self.parent or self
            return [top, *top.legs]
        if self.order_class is OrderClass.BRACKET and self.parent is not None:
            return list(self.parent.legs)
        return []

    def share(self, qty: Decimal) -> Counted:
        notional = qty * self.valuation * contract_multiplier(self.asset_class)
        return Counted(self.symbol, self.asset_class, self.side, qty, notional, self.role is Role.PROTECTIVE)

    def summary(self) -> dict:
        """The ledger's view of the order, for the audit log and the operator."""
        return {
            "client_order_id": self.client_order_id,
            "order_id": self.venue_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "type": self.type.value,
            "role": self.role.value,
            "qty": self.qty,
            "notional": self.notional,
            "limit_price": self.limit_price,
            "stop_price": self.stop_price,
            "status": self.status.value,
            "phase": self.phase.value,
            "filled_qty": self.filled_qty,
            "filled_avg_price": self.filled_avg_price,
            "parent": self.parent.client_order_id if self.parent else None,
            "replaces": self.replaces,
            "key_id": self.key_id,
        }


def valuation_of(mark: Decimal | None, limit_price: Decimal | None, stop_price: Decimal | None) -> Decimal:
    """Value an order like a new one: at the worst of the mark and its own prices."""
    return max(mark or ZERO, limit_price or ZERO, stop_price or ZERO)


def from_intent(
    intent: OrderIntent, role: Role, key_id: str | None, valuation: Decimal, protective_stop: bool = False
) -> LedgerOrder:
    """The ledger's record of an order the gateway decided to forward, with its exit legs."""
    assert intent.client_order_id, "the order path assigns a client id before recording"
    order = LedgerOrder(
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        asset_class=intent.asset_class,
        side=intent.side,
        type=intent.type,
        role=role,
        qty=intent.qty,
        notional=intent.notional,
        limit_price=intent.limit_price,
        stop_price=intent.stop_price,
        trail_price=intent.trail_price,
        trail_percent=intent.trail_percent,
        extended_hours=intent.extended_hours,
        time_in_force=intent.time_in_force,
        order_class=intent.order_class,
        key_id=key_id,
        valuation=valuation,
    )
    exit_side = intent.side.opposite
    if intent.order_class in (OrderClass.BRACKET, OrderClass.OTO, OrderClass.OCO):
        legs = []
        if intent.take_profit is not None and intent.order_class is not OrderClass.OCO:
            legs.append((OrderType.LIMIT, intent.take_profit.limit_price, None))
        if intent.stop_loss is not None:
            stop = intent.stop_loss
            legs.append((OrderType.STOP_LIMIT if stop.limit_price else OrderType.STOP, stop.limit_price, stop.stop_price))
        for n, (kind, limit, stop_price) in enumerate(legs):
            side = intent.side if intent.order_class is OrderClass.OCO else exit_side
            leg = LedgerOrder(
                client_order_id=f"{intent.client_order_id}:leg{n}",  # the venue assigns its own; matched on ack
                symbol=intent.symbol,
                asset_class=intent.asset_class,
                side=side,
                type=kind,
                role=Role.PROTECTIVE if protective_stop and stop_price is not None else Role.EXIT,
                qty=intent.qty,
                notional=None if intent.qty is not None else intent.notional,
                limit_price=limit,
                stop_price=stop_price,
                time_in_force=intent.time_in_force,
                order_class=intent.order_class,
                key_id=key_id,
                parent=order,
                valuation=valuation_of(valuation, limit, stop_price),
                status=OrderStatus.HELD,
            )
            order.legs.append(leg)
    return order


def from_venue(venue_order: Order, role: Role, key_id: str | None, mark: Decimal | None) -> LedgerOrder:
    """A venue order the ledger did not forward itself (found by reconcile or the stream)."""
    return LedgerOrder(
        client_order_id=venue_order.client_order_id or f"venue:{venue_order.id}",
        symbol=venue_order.symbol,
        asset_class=venue_order.asset_class,
        side=venue_order.side,
        type=venue_order.type,
        role=role,
        qty=venue_order.qty,
        notional=venue_order.notional,
        limit_price=venue_order.limit_price,
        stop_price=venue_order.stop_price,
        trail_price=venue_order.trail_price,
        trail_percent=venue_order.trail_percent,
        extended_hours=venue_order.extended_hours,
        time_in_force=venue_order.time_in_force,
        order_class=venue_order.order_class,
        key_id=key_id,
        venue_id=venue_order.id,
        phase=Phase.LIVE,
        status=venue_order.status,
        filled_qty=venue_order.filled_qty,
        filled_avg_price=venue_order.filled_avg_price,
        valuation=valuation_of(mark, venue_order.limit_price, venue_order.stop_price),
    )
