"""The ledger: what each order adds to the book, through decisions, answers, events and
snapshots. The book must always equal a brute-force recount of what the ledger says is open."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

from gateway.ledger import Ledger, Phase, Role
from gateway.model import (
    Account,
    AssetClass,
    Order,
    OrderClass,
    OrderEventType,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionUpdate,
    Side,
    StopLoss,
    StreamStatus,
    TimeInForce,
)
from gateway.risk.portfolio import Portfolio

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
EQ = AssetClass.US_EQUITY


def account(equity="100000"):
    e = D(equity)
    return Account(id="a", equity=e, cash=e, buying_power=2 * e, long_market_value=D(0), short_market_value=D(0), last_equity=e)


def fresh(positions=(), marks=None) -> Ledger:
    ledger = Ledger(Portfolio())
    for symbol, price in (marks or {"XOM": D(110), "AAPL": D(190)}).items():
        ledger.book.update_mark(symbol, EQ, price)
    ledger.apply_snapshot(account(), list(positions), [], ledger.begin_snapshot(), 1.0)
    return ledger


def intent(symbol="XOM", side=Side.BUY, qty="10", cid="c1", **kw) -> OrderIntent:
    return OrderIntent(symbol=symbol, asset_class=EQ, side=side, type=kw.pop("type", OrderType.MARKET),
                       time_in_force=TimeInForce.DAY, qty=D(qty), client_order_id=cid, **kw)


def venue_order(oid, cid, side=Side.BUY, qty="10", status=OrderStatus.NEW, symbol="XOM", filled="0", legs=(), **kw) -> Order:
    return Order(id=oid, client_order_id=cid, symbol=symbol, asset_class=EQ, side=side,
                 type=kw.pop("type", OrderType.MARKET), time_in_force=TimeInForce.DAY, status=status,
                 created_at=NOW, updated_at=NOW, submitted_at=kw.pop("submitted_at", NOW), qty=D(qty),
                 filled_qty=D(filled), legs=list(legs), **kw)


def record(ledger: Ledger, i: OrderIntent, role=Role.ENTRY, protective_stop=False):
    """What the order path does in its synchronous step: count (engine) then record."""
    counted = ledger.book.reserve(ledger.book.project(i.symbol, EQ, i.side, i.qty, D(110)), EQ)
    return ledger.record(i, counted, role, "bot-1", D(110), protective_stop=protective_stop)


def recount(ledger: Ledger) -> tuple[D, D]:
    """Brute force: pending buy and sell quantity of every open, counted order (non-protective)."""
    buys = sells = D(0)
    for order in ledger.open_orders():
        c = order.counted
        if c is None or c.protective:
            continue
        if c.side is Side.BUY:
            buys += c.qty
        else:
            sells += c.qty
    return buys, sells


def pending(ledger: Ledger, symbol="XOM") -> tuple[D, D]:
    book = ledger.book.book(symbol)
    return (book.pending_buy_qty, book.pending_sell_qty) if book else (D(0), D(0))


def fill(order: Order, qty=None, position=None) -> OrderUpdate:
    done = replace(order, status=OrderStatus.FILLED, filled_qty=order.qty if qty is None else D(qty))
    return OrderUpdate(OrderEventType.FILL, done, NOW, qty=done.filled_qty, price=D(110),
                       position_qty=None if position is None else D(position))


# --- legs -------------------------------------------------------------------------------

def oto_with_stop(ledger: Ledger, qty="10"):
    i = intent(qty=qty, order_class=OrderClass.OTO, stop_loss=StopLoss(D(100)))
    entry = record(ledger, i)
    leg = venue_order("leg1", "alpaca-leg", side=Side.SELL, qty=qty, status=OrderStatus.HELD, type=OrderType.STOP, stop_price=D(100))
    parent = venue_order("p1", "c1", qty=qty, order_class=OrderClass.OTO, legs=[leg])
    ledger.acknowledged(entry, parent)
    return entry, parent, leg


def test_a_held_stop_leg_under_its_unfilled_parent_adds_nothing():
    ledger = fresh()
    entry, _, _ = oto_with_stop(ledger)
    assert pending(ledger) == (D(10), D(0))
    assert entry.legs[0].venue_id == "leg1" and entry.legs[0].role is Role.EXIT


def test_a_leg_replaced_upward_counts_beyond_what_its_parent_opens():
    ledger = fresh()
    entry, _, leg = oto_with_stop(ledger)
    bigger = replace(leg, id="leg2", client_order_id="c-rep", qty=D(30), replaces="leg1")
    ledger.apply(OrderUpdate(OrderEventType.NEW, bigger, NOW))
    assert pending(ledger) == (D(10), D(20))  # 30 sells against a parent that opens 10
    assert ledger.find("leg1").status is OrderStatus.REPLACED
    assert entry.legs[0].venue_id == "leg2"  # the replacement takes the leg's place


def test_after_the_parent_fills_its_stop_leg_is_an_exit_of_the_position():
    ledger = fresh()
    _, parent, leg = oto_with_stop(ledger)
    ledger.apply(fill(parent))
    ledger.apply(OrderUpdate(OrderEventType.NEW, replace(leg, status=OrderStatus.NEW), NOW))
    book = ledger.book.book("XOM")
    assert book.position_qty == 10 and pending(ledger) == (D(0), D(10))
    assert book.worst_notional() == D(1100)  # the stop only closes: no short exposure
    assert ledger.exit_capacity("XOM", Side.SELL) == 0  # the bot's own stop uses it up


def test_a_gateway_attached_stop_leg_leaves_the_bots_exit_capacity_alone():
    ledger = fresh()
    i = intent(qty="18", order_class=OrderClass.OTO, stop_loss=StopLoss(D(100)))
    entry = record(ledger, i, protective_stop=True)
    leg = venue_order("leg1", "x", side=Side.SELL, qty="18", status=OrderStatus.HELD, type=OrderType.STOP, stop_price=D(100))
    parent = venue_order("p1", "c1", qty="18", order_class=OrderClass.OTO, legs=[leg])
    ledger.acknowledged(entry, parent)
    ledger.apply(fill(parent))
    ledger.apply(OrderUpdate(OrderEventType.NEW, replace(leg, status=OrderStatus.NEW), NOW))
    assert entry.legs[0].role is Role.PROTECTIVE
    assert ledger.exit_capacity("XOM", Side.SELL) == 18
    assert ledger.book.book("XOM").reduces_only(Side.SELL, D(18))
    assert ledger.book.book("XOM").protective_sell_qty == 18


def test_a_brackets_two_exits_count_once():
    ledger = fresh()
    tp = venue_order("tp", "tp", side=Side.SELL, status=OrderStatus.NEW, type=OrderType.LIMIT, limit_price=D(120),
                     order_class=OrderClass.BRACKET)
    sl = venue_order("sl", "sl", side=Side.SELL, status=OrderStatus.HELD, type=OrderType.STOP, stop_price=D(100),
                     order_class=OrderClass.BRACKET)
    parent = venue_order("p", "p", status=OrderStatus.FILLED, filled="10", order_class=OrderClass.BRACKET, legs=[tp, sl])
    ledger.apply_snapshot(account(), [Position("XOM", EQ, D(10), D(110), D(110))], [parent], ledger.begin_snapshot(), 2.0)
    assert pending(ledger) == (D(0), D(10))


# --- the order path's outcomes ----------------------------------------------------------

def test_an_uncertain_order_keeps_counting_and_a_proven_absent_one_is_released():
    ledger = fresh()
    entry = record(ledger, intent(qty="17"))
    ledger.uncertain(entry)
    ledger.apply_snapshot(account(), [], [], ledger.begin_snapshot(), 2.0)  # not listed: still uncertain
    assert entry.phase is Phase.UNCERTAIN and pending(ledger) == (D(17), D(0))
    ledger.refused(entry)
    assert pending(ledger) == (D(0), D(0))


def test_an_uncertain_order_that_landed_is_counted_once():
    ledger = fresh()
    entry = record(ledger, intent(qty="17"))
    ledger.uncertain(entry)
    ledger.apply(OrderUpdate(OrderEventType.NEW, venue_order("v1", "c1", qty="17"), NOW))
    ledger.apply_snapshot(account(), [], [venue_order("v1", "c1", qty="17")], ledger.begin_snapshot(), 2.0)
    assert entry.phase is Phase.LIVE and pending(ledger) == (D(17), D(0)) and len(ledger.open_orders()) == 1


def test_the_stream_before_the_answer_is_one_order_not_two():
    ledger = fresh()
    entry = record(ledger, intent())
    ledger.apply(OrderUpdate(OrderEventType.NEW, venue_order("v1", "c1"), NOW))
    ledger.acknowledged(entry, venue_order("v1", "c1"))
    assert len(ledger.open_orders()) == 1 and pending(ledger) == (D(10), D(0))


def test_a_fill_in_the_answer_moves_the_position_once():
    ledger = fresh()
    entry = record(ledger, intent())
    filled = venue_order("v1", "c1", status=OrderStatus.FILLED, filled="10", filled_avg_price=D(110))
    ledger.acknowledged(entry, filled)
    ledger.apply(fill(venue_order("v1", "c1")))  # the stream's fill arrives after the answer
    assert ledger.book.position("XOM") == 10 and pending(ledger) == (D(0), D(0))


def test_an_exit_right_after_a_fill_is_judged_against_the_new_position():
    ledger = fresh()
    order = venue_order("v1", "c1")
    ledger.acknowledged(record(ledger, intent()), order)
    ledger.apply(fill(order))
    assert ledger.book.book("XOM").reduces_only(Side.SELL, D(10))


def test_the_venues_position_figure_wins_over_arithmetic():
    ledger = fresh([Position("XOM", EQ, D(5), D(110), D(110))])
    order = venue_order("v1", "c1")
    ledger.acknowledged(record(ledger, intent()), order)
    ledger.apply(fill(order, position="12"))  # a fill the ledger never saw happened too
    assert ledger.book.position("XOM") == 12


def test_suspend_and_resume_take_back_exactly_what_was_counted():
    ledger = fresh()
    entry = record(ledger, intent(qty="7"))
    ledger.suspend(entry)
    assert pending(ledger) == (D(0), D(0))
    ledger.resume(entry)
    assert pending(ledger) == (D(7), D(0))


# --- snapshots --------------------------------------------------------------------------

def test_six_hundred_resting_orders_all_count():
    ledger = fresh()
    orders = [venue_order(f"v{n}", f"c{n}", qty="1", type=OrderType.LIMIT, limit_price=D(100),
                          submitted_at=NOW + timedelta(microseconds=n)) for n in range(600)]
    ledger.apply_snapshot(account(), [], orders, ledger.begin_snapshot(), 2.0)
    assert pending(ledger) == (D(600), D(0)) == recount(ledger)


def test_an_incomplete_snapshot_drops_nothing():
    ledger = fresh()
    ledger.acknowledged(record(ledger, intent()), venue_order("v1", "c1"))
    ledger.apply_snapshot(account(), [], None, ledger.begin_snapshot(), 2.0)
    assert pending(ledger) == (D(10), D(0))


def test_an_order_gone_from_a_complete_snapshot_is_closed_and_reported():
    ledger = fresh()
    entry = record(ledger, intent())
    ledger.acknowledged(entry, venue_order("v1", "c1"))
    vanished = ledger.apply_snapshot(account(), [Position("XOM", EQ, D(10), D(110), D(110))], [], ledger.begin_snapshot(), 2.0)
    assert vanished == [entry] and pending(ledger) == (D(0), D(0)) and ledger.book.position("XOM") == 10


def test_a_snapshot_never_overrules_a_newer_event():
    ledger = fresh()
    order = venue_order("v1", "c1")
    ledger.acknowledged(record(ledger, intent()), order)
    started = ledger.begin_snapshot()
    ledger.apply(fill(order))  # arrives while the snapshot is being read
    ledger.apply_snapshot(account(), [], [order], started, 2.0)  # taken before the fill
    assert ledger.book.position("XOM") == 10 and pending(ledger) == (D(0), D(0))


def test_an_order_the_gateway_did_not_place_counts_as_an_entry():
    ledger = fresh()
    ledger.apply(OrderUpdate(OrderEventType.NEW, venue_order("x", "placed-elsewhere", qty="3"), NOW))
    assert pending(ledger) == (D(3), D(0)) and ledger.find("x").role is Role.FOREIGN


def test_a_protective_stop_is_recognised_after_a_restart_by_its_client_id():
    ledger = fresh([Position("XOM", EQ, D(10), D(110), D(110))])
    stop = venue_order("s", "gw-stop-abc", side=Side.SELL, type=OrderType.STOP, stop_price=D(100))
    ledger.apply_snapshot(account(), [Position("XOM", EQ, D(10), D(110), D(110))], [stop], ledger.begin_snapshot(), 2.0)
    assert ledger.find("s").role is Role.PROTECTIVE and pending(ledger) == (D(0), D(0))
    assert ledger.exit_capacity("XOM", Side.SELL) == 10


def test_the_book_is_current_only_with_a_live_stream_reconciled_since_it_connected():
    ledger = fresh()
    assert not ledger.current(5.0)
    ledger.apply(StreamStatus(True, NOW))
    assert not ledger.current(5.0)  # events may have been missed before it came up
    ledger.apply_snapshot(account(), [], [], ledger.begin_snapshot(), 6.0)
    assert ledger.current(9.0) and ledger.book.snapshot_at == 9.0
    ledger.apply(StreamStatus(False, NOW))
    assert not ledger.current(10.0)


def test_a_position_update_sets_the_position():
    ledger = fresh()
    ledger.apply(PositionUpdate("XOM", EQ, D(-4), D(110), NOW))
    assert ledger.book.position("XOM") == -4


# --- never negative, always the sum of what is open --------------------------------------

def test_random_histories_keep_the_book_equal_to_a_recount_and_never_negative():
    rng = random.Random(7)
    for _ in range(30):
        ledger = fresh()
        live: list[tuple] = []
        for n in range(40):
            step = rng.random()
            if step < 0.4 or not live:
                side = rng.choice([Side.BUY, Side.SELL])
                qty = str(rng.randint(1, 9))
                entry = record(ledger, intent(side=side, qty=qty, cid=f"c{n}"))
                outcome = rng.random()
                if outcome < 0.6:
                    order = venue_order(f"v{n}", f"c{n}", side=side, qty=qty)
                    ledger.acknowledged(entry, order)
                    live.append((entry, order))
                elif outcome < 0.8:
                    ledger.uncertain(entry)
                else:
                    ledger.refused(entry)
            else:
                entry, order = live.pop(rng.randrange(len(live)))
                kind = rng.random()
                if kind < 0.4:
                    part = min(order.qty, D(rng.randint(1, 9)))
                    ev = OrderEventType.FILL if part == order.qty else OrderEventType.PARTIAL_FILL
                    status = OrderStatus.FILLED if part == order.qty else OrderStatus.PARTIALLY_FILLED
                    ledger.apply(OrderUpdate(ev, replace(order, status=status, filled_qty=part), NOW))
                elif kind < 0.7:
                    ledger.apply(OrderUpdate(OrderEventType.CANCELED, replace(order, status=OrderStatus.CANCELED), NOW))
                else:
                    ledger.suspend(entry)
                    ledger.resume(entry)
                    live.append((entry, order))
            buys, sells = pending(ledger)
            assert buys >= 0 and sells >= 0
            assert (buys, sells) == recount(ledger)


def test_a_client_id_is_free_again_only_when_its_order_never_reached_the_venue():
    ledger = fresh()
    refused = record(ledger, intent(cid="again"))
    ledger.refused(refused)
    assert ledger.client_id_free("again")
    landed = record(ledger, intent(cid="again"))
    assert ledger.get("again") is landed and not ledger.client_id_free("again")
    ledger.acknowledged(landed, venue_order("v9", "again", status=OrderStatus.FILLED, filled="10"))
    assert not ledger.client_id_free("again")  # filled at the venue: the id is taken for good
