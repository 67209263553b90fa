"""The ledger: every order the gateway forwarded (and every other order the venue shows), kept
true by the venue's events, with the book the rules judge derived from it.

Each open order holds one share of the book (``Counted``), kept on the order itself; any change
to the order (a fill, a cancel, its parent filling) replaces that share with the new one. So the
book is always the sum of what the ledger says is open, however many orders rest, and a share is
only ever taken back if it was counted.

What counts:
- every open order, legs included, for its unfilled quantity;
- a leg whose parent has not filled yet counts only beyond what the parent opens (an OTO stop of
  10 under a buy of 10 adds nothing; the same stop replaced up to 30 adds 20);
- of orders where one cancels the other (a bracket's two exits, an OCO), only the largest;
- orders in flight and orders with an uncertain answer count in full (fail closed);
- the gateway's own protective stops are kept apart: never exposure, never a bot's exit capacity.

Sources of truth, newest wins: the order path (decided, acknowledged, refused, uncertain), the
venue's event stream, and reconcile snapshots. A snapshot cannot overrule what an event newer than
the snapshot's start said (epochs), and an incomplete snapshot never drops anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from ..model import (
    Account,
    Order,
    OrderEventType,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Position,
    PositionUpdate,
    Side,
    StreamStatus,
    VenueEvent,
)
from ..risk.portfolio import Counted, Portfolio
from .journal import Journal
from .orders import (
    ZERO,
    LedgerOrder,
    Phase,
    Role,
    from_intent,
    from_venue,
    valuation_of,
)

log = logging.getLogger("gateway.ledger")

PROTECTIVE_PREFIX = "gw-stop-"  # client ids of the gateway's own stops (recognisable after a restart)

_FILLS = (OrderEventType.FILL, OrderEventType.PARTIAL_FILL)


@dataclass(frozen=True, slots=True)
class Change:
    """What listeners (protective stops, bots' streams, the dashboard) are told."""

    order: LedgerOrder | None
    event: VenueEvent | None = None
    position_changed: str | None = None  # the symbol whose position moved


Listener = Callable[[Change], None]


class Ledger:
    """Not thread-safe: owned by one event loop, changed only in synchronous steps."""

    def __init__(self, book: Portfolio):
        self.book = book
        self._by_client: dict[str, LedgerOrder] = {}
        self._by_venue: dict[str, LedgerOrder] = {}
        self._open: dict[str, LedgerOrder] = {}  # client id -> order that is_open
        self._epoch = 0
        self._fill_epoch: dict[str, int] = {}  # symbol -> epoch of the last position change by an event
        self.stream_live = False
        self.reconciled_since_connect = False
        self._connected_epoch = 0
        self.listeners: list[Listener] = []
        self.journal = Journal()  # who placed what, read from the audit log at start

    # -- reading ---------------------------------------------------------------------------

    def get(self, client_order_id: str) -> LedgerOrder | None:
        return self._by_client.get(client_order_id)

    def by_venue_id(self, order_id: str) -> LedgerOrder | None:
        return self._by_venue.get(order_id)

    def find(self, order_id: str) -> LedgerOrder | None:
        """By venue id, or by client id."""
        return self._by_venue.get(order_id) or self._by_client.get(order_id)

    def client_id_free(self, client_order_id: str) -> bool:
        """Unused, or used only by an order proven never to have reached the venue."""
        known = self._by_client.get(client_order_id)
        return known is None or (known.phase is Phase.DONE and known.venue_id is None)

    def open_orders(self, symbol: str | None = None, key_id: str | None = None) -> list[LedgerOrder]:
        return [
            o
            for o in self._open.values()
            if (symbol is None or o.symbol == symbol) and (key_id is None or o.key_id == key_id)
        ]

    def uncertain_orders(self) -> list[LedgerOrder]:
        return [o for o in self._open.values() if o.phase is Phase.UNCERTAIN]

    def exit_capacity(self, symbol: str, side: Side) -> Decimal:
        book = self.book.book(symbol)
        return book.exit_capacity(side) if book is not None else ZERO

    def current(self, now_monotonic: float) -> bool:
        """True while the event stream is up and a reconcile has completed since it came up:
        the book is then current without polling, and is vouched fresh as of now."""
        if self.stream_live and self.reconciled_since_connect:
            self.book.touch(now_monotonic)
            return True
        return False

    def __len__(self) -> int:
        return len(self._by_client)

    # -- the order path --------------------------------------------------------------------

    def record(
        self,
        intent: OrderIntent,
        counted: Counted | None,
        role: Role,
        key_id: str | None,
        valuation: Decimal,
        replaces: LedgerOrder | None = None,
        protective_stop: bool = False,
    ) -> LedgerOrder:
        """An order was allowed (and ``counted`` by the engine in the same step): track it.
        ``protective_stop``: its stop leg was attached by the gateway, which owns it."""
        order = from_intent(intent, role, key_id, valuation, protective_stop)
        if not self.client_id_free(order.client_order_id):
            raise ValueError(f"client order id {intent.client_order_id} is already in the ledger")
        order.counted = counted
        if replaces is not None:
            order.replaces = replaces.client_order_id
            _inherit(order, replaces)
        self._epoch += 1
        order.epoch = self._epoch
        self._index(order)
        for leg in order.legs:
            leg.epoch = self._epoch
            self._index(leg)
        self._recount_family(order)
        return order

    def acknowledged(self, order: LedgerOrder, venue_order: Order) -> None:
        """The venue accepted it and answered with ``venue_order`` (legs nested)."""
        self._epoch += 1
        self._set_venue_id(order, venue_order.id)
        order.phase = Phase.LIVE
        moved = self._merge(order, venue_order, moves_position=True)
        for leg, venue_leg in _match_legs(order.legs, venue_order.legs):
            self._set_venue_id(leg, venue_leg.id)
            leg.phase = Phase.LIVE
            moved = self._merge(leg, venue_leg, moves_position=True) or moved
        for leg in order.legs:
            if leg.phase is Phase.DECIDED:  # the venue did not show it: count it as live, fail closed
                leg.phase = Phase.LIVE
        if order.replaces is not None:
            old = self._by_client.get(order.replaces)
            if old is not None:
                old.suspended = False
                old.replaced_by = order.client_order_id
                old.status = OrderStatus.REPLACED
                old.phase = Phase.DONE
                old.epoch = self._epoch
                self._recount_family(old)
        self._recount_family(order)
        self._notify(Change(order, position_changed=order.symbol if moved else None))

    def refused(self, order: LedgerOrder, status: OrderStatus = OrderStatus.REJECTED) -> None:
        """The venue does not have it (it refused it, or a lookup proved it absent)."""
        self._epoch += 1
        self._close(order, status)
        for leg in order.legs:
            self._close(leg, status)
        self._resume_replaced(order)
        self._notify(Change(order))

    def uncertain(self, order: LedgerOrder) -> None:
        """Sent, answer unknown: keep counting it; the order it replaces counts again too."""
        self._epoch += 1
        order.phase = Phase.UNCERTAIN
        order.epoch = self._epoch
        self._resume_replaced(order)
        self._notify(Change(order))

    def suspend(self, order: LedgerOrder) -> None:
        """Take an order out of the book while its replacement is judged (a replace is a new
        order, judged without the one it replaces). ``resume`` puts it back."""
        order.suspended = True
        self._recount_family(order)

    def resume(self, order: LedgerOrder) -> None:
        order.suspended = False
        self._recount_family(order)

    def remember_venue_order(self, venue_order: Order, role: Role = Role.FOREIGN) -> LedgerOrder:
        """An order the venue has that the ledger did not know (legs nested): track it."""
        known = self.find(venue_order.id)
        if known is not None:
            return known
        self._epoch += 1
        order = self._adopt(venue_order, role, None)
        for venue_leg in venue_order.legs:
            leg = self._adopt(venue_leg, role, order)
            order.legs.append(leg)
        self._recount_family(order)
        return order

    # -- the venue's events ----------------------------------------------------------------

    def apply(self, event: VenueEvent) -> None:
        if isinstance(event, StreamStatus):
            self._epoch += 1
            self.stream_live = event.connected
            self.reconciled_since_connect = False
            self._connected_epoch = self._epoch
            self._notify(Change(None, event))
            return
        self._epoch += 1
        if isinstance(event, PositionUpdate):
            self._fill_epoch[event.symbol] = self._epoch
            self.book.set_position(event.symbol, event.asset_class, event.qty)
            self._notify(Change(None, event, position_changed=event.symbol))
            return
        self._apply_order_update(event)

    def _apply_order_update(self, event: OrderUpdate) -> None:
        venue_order = event.order
        order = self._by_venue.get(venue_order.id)
        if order is None and venue_order.client_order_id:
            order = self._by_client.get(venue_order.client_order_id)
            if order is not None and order.venue_id not in (None, venue_order.id):
                order = None  # a reused client id: a different order
            if order is not None:
                self._set_venue_id(order, venue_order.id)
                if order.phase in (Phase.DECIDED, Phase.UNCERTAIN):
                    order.phase = Phase.LIVE
        if order is None:
            if not venue_order.status.is_open and event.event not in _FILLS:
                return  # a closed order we never counted: nothing to take back
            role = Role.PROTECTIVE if venue_order.client_order_id.startswith(PROTECTIVE_PREFIX) else Role.FOREIGN
            unseen = replace(venue_order, filled_qty=ZERO, status=OrderStatus.NEW)
            replaced = self._by_venue.get(venue_order.replaces) if venue_order.replaces else None
            order = self._adopt(unseen, replaced.role if replaced is not None else role, None)
            if replaced is not None:
                order.replaces = replaced.client_order_id
                _inherit(order, replaced)
        before = self.book.position(order.symbol)
        self._merge(order, venue_order, moves_position=True)
        if event.position_qty is not None and event.event in _FILLS:
            # The venue's own figure after this fill is the truth (it also covers fills of
            # orders the ledger never saw).
            self._fill_epoch[order.symbol] = self._epoch
            self.book.set_position(order.symbol, order.asset_class, event.position_qty, event.price)
        order.epoch = self._epoch
        if event.event is OrderEventType.REPLACED:
            order.status = OrderStatus.REPLACED
            order.phase = Phase.DONE
        if venue_order.replaces:
            old = self._by_venue.get(venue_order.replaces)
            if old is not None and old.is_open:
                old.replaced_by = order.client_order_id
                old.suspended = False
                self._close(old, OrderStatus.REPLACED)
        moved = order.symbol if self.book.position(order.symbol) != before else None
        self._recount_family(order)
        self._notify(Change(order, event, position_changed=moved))

    # -- reconcile -------------------------------------------------------------------------

    def begin_snapshot(self) -> int:
        """Mark the moment a venue snapshot is requested; pass the result to apply_snapshot."""
        self._epoch += 1
        return self._epoch

    def apply_snapshot(
        self,
        account: Account,
        positions: Iterable[Position],
        open_orders: Iterable[Order] | None,
        started: int,
        now_monotonic: float,
    ) -> list[LedgerOrder]:
        """Merge the venue's truth. ``open_orders`` is None when the list could not be read in
        full: then nothing is dropped. Returns the orders that vanished (open here, gone at the
        venue since before the snapshot began): closed now, their final status to be looked up."""
        self._epoch += 1
        seen: set[str] = set()
        if open_orders is not None:
            for venue_order in open_orders:
                for one, parent in _flatten(venue_order):
                    seen.add(one.id)
                    self._snapshot_order(one, parent, started)
        vanished: list[LedgerOrder] = []
        if open_orders is not None:
            for order in list(self._open.values()):
                if order.phase is not Phase.LIVE or order.epoch > started or order.venue_id in seen:
                    continue
                self._close(order, OrderStatus.CANCELED)  # provisional: the reconciler looks it up
                vanished.append(order)
        held = {p.symbol: p for p in positions}
        for symbol in set(held) | {s for s, b in self.book.books.items() if b.position_qty != 0}:
            if self._fill_epoch.get(symbol, 0) > started:
                continue  # an event newer than this snapshot already moved it
            p = held.get(symbol)
            if p is not None:
                self.book.set_position(symbol, p.asset_class, p.qty, p.current_price if p.current_price > 0 else None)
            else:
                book = self.book.books[symbol]
                self.book.set_position(symbol, book.asset_class, ZERO)
        self.book.set_account(account, now_monotonic)
        if self.stream_live and started > self._connected_epoch:
            self.reconciled_since_connect = True  # a snapshot begun after the stream came up
        for order in vanished:
            self._notify(Change(order))
        self._notify(Change(None, position_changed="*"))
        return vanished

    def _snapshot_order(self, venue_order: Order, parent: Order | None, started: int) -> None:
        order = self._by_venue.get(venue_order.id)
        if order is None and venue_order.client_order_id:
            candidate = self._by_client.get(venue_order.client_order_id)
            if candidate is not None and candidate.venue_id in (None, venue_order.id):
                order = candidate
                self._set_venue_id(order, venue_order.id)
                order.phase = Phase.LIVE
        if order is None:
            parent_order = self._by_venue.get(parent.id) if parent is not None else None
            role = Role.PROTECTIVE if venue_order.client_order_id.startswith(PROTECTIVE_PREFIX) else Role.FOREIGN
            order = self._adopt(venue_order, role, parent_order)
            if parent_order is not None:
                parent_order.legs.append(order)
            order.epoch = self._epoch
            self._recount_family(order)
            return
        if order.epoch > started:
            return  # the ledger heard something newer
        self._merge(order, venue_order, moves_position=False)
        order.epoch = self._epoch
        self._recount_family(order)

    # -- internals -------------------------------------------------------------------------

    def _adopt(self, venue_order: Order, role: Role, parent: LedgerOrder | None) -> LedgerOrder:
        owner = self.journal.owner(venue_order.client_order_id, venue_order.id)
        key_id = None
        if owner is not None:  # forwarded by this gateway before a restart: the journal names it
            role, key_id = owner.role, owner.key_id
        order = from_venue(venue_order, role, key_id, self.book.mark(venue_order.symbol))
        if order.client_order_id in self._by_client:
            order.client_order_id = f"venue:{venue_order.id}"  # never shadow an order we track
        order.parent = parent
        order.epoch = self._epoch
        self._index(order)
        return order

    def _index(self, order: LedgerOrder) -> None:
        self._by_client[order.client_order_id] = order
        if order.venue_id:
            self._by_venue[order.venue_id] = order
        self._track_open(order)

    def _set_venue_id(self, order: LedgerOrder, venue_id: str) -> None:
        stray = self._by_venue.get(venue_id)
        if stray is not None and stray is not order:
            # The stream told us about it before the order path's answer did: one order, not two.
            self._close(stray, stray.status)
            self._by_client.pop(stray.client_order_id, None)
        order.venue_id = venue_id
        self._by_venue[venue_id] = order

    def _merge(self, order: LedgerOrder, venue_order: Order, *, moves_position: bool) -> bool:
        """Take the venue's word on ``order``. Fills the ledger had not seen move the position
        when ``moves_position`` (an answer or an event); a snapshot's do not (its positions
        already hold them). True when the position moved."""
        order.status = venue_order.status
        moved = False
        if venue_order.filled_qty > order.filled_qty:
            if moves_position:
                moved = True
                delta = venue_order.filled_qty - order.filled_qty
                self._fill_epoch[order.symbol] = self._epoch
                position = self.book.position(order.symbol) + order.side.sign * delta
                self.book.set_position(order.symbol, order.asset_class, position, venue_order.filled_avg_price)
            order.filled_qty = venue_order.filled_qty
            order.filled_avg_price = venue_order.filled_avg_price or order.filled_avg_price
        if venue_order.qty is not None:
            order.qty = venue_order.qty
        if venue_order.limit_price is not None:
            order.limit_price = venue_order.limit_price
        if venue_order.stop_price is not None:
            order.stop_price = venue_order.stop_price
        order.valuation = max(order.valuation, valuation_of(None, order.limit_price, order.stop_price))
        if not venue_order.status.is_open:
            order.phase = Phase.DONE
        return moved

    def _close(self, order: LedgerOrder, status: OrderStatus) -> None:
        order.status = status
        order.phase = Phase.DONE
        order.epoch = self._epoch
        self._recount_family(order)

    def _resume_replaced(self, order: LedgerOrder) -> None:
        if order.replaces is not None:
            old = self._by_client.get(order.replaces)
            if old is not None and old.suspended:
                self.resume(old)

    def _track_open(self, order: LedgerOrder) -> None:
        if order.is_open:
            self._open[order.client_order_id] = order
        else:
            self._open.pop(order.client_order_id, None)

    def _recount_family(self, order: LedgerOrder) -> None:
        """Re-derive the share of every order whose share depends on this one: itself, its
        parent, its legs and its one-cancels-other group."""
        top = order.parent or order
        family = {id(top): top}
        for o in (order, *top.legs, *order.legs, *order.one_cancels_other()):
            family[id(o)] = o
        for o in family.values():
            self._track_open(o)
        groups = [o for o in family.values() if o.one_cancels_other()]
        counting_in_group = _largest(groups)
        for o in family.values():
            self._recount(o, counting_in_group)

    def _recount(self, order: LedgerOrder, counting_in_group: set[int]) -> None:
        qty = ZERO
        if order.is_open and not order.suspended:
            qty = order.remaining
            if order.parent is not None and order.parent.side is not order.side:
                qty = max(ZERO, qty - order.unfilled_parent)  # an exit leg of an entry not yet filled
            if order.one_cancels_other() and id(order) not in counting_in_group:
                qty = ZERO
        wanted = order.share(qty) if qty > 0 else None
        if wanted == order.counted:
            return
        if order.counted is not None:
            self.book.uncount(order.counted)
        if wanted is not None:
            self.book.count(wanted, order.valuation)
        order.counted = wanted

    def _notify(self, change: Change) -> None:
        for listener in list(self.listeners):
            try:
                listener(change)
            except Exception:  # a broken listener must not corrupt the ledger
                log.exception("ledger listener failed")


def _largest(group_members: list[LedgerOrder]) -> set[int]:
    """Of each one-cancels-other group, the member whose share counts: the largest remaining."""
    chosen: set[int] = set()
    done: set[int] = set()
    for member in group_members:
        group = [o for o in member.one_cancels_other() if o.is_open and not o.suspended]
        key = id(group[0]) if group else None
        if key is None or key in done:
            continue
        done.add(key)
        best = max(group, key=lambda o: (o.remaining, -len(o.client_order_id)))
        chosen.add(id(best))
    return chosen


def _inherit(new: LedgerOrder, old: LedgerOrder) -> None:
    """A replacement takes the place of the order it replaces: same parent, same group."""
    new.order_class = old.order_class
    parent = old.parent
    if parent is not None:
        new.parent = parent
        parent.legs = [new if leg is old else leg for leg in parent.legs]
        if new not in parent.legs:
            parent.legs.append(new)


def _flatten(order: Order, parent: Order | None = None):
    yield order, parent
    for leg in order.legs:
        yield from _flatten(leg, order)


def _match_legs(legs: list[LedgerOrder], venue_legs: list[Order]) -> list[tuple[LedgerOrder, Order]]:
    """Pair the ledger's legs with the venue's by type and side (a bracket has one of each)."""
    pairs = []
    free = list(venue_legs)
    for leg in legs:
        for venue_leg in free:
            same_kind = venue_leg.type is leg.type or {venue_leg.type.value, leg.type.value} <= {"stop", "stop_limit"}
            if venue_leg.side is leg.side and same_kind:
                pairs.append((leg, venue_leg))
                free.remove(venue_leg)
                break
    return pairs
