"""The suspend_trade record and the paper venue honouring it: every new order (a replace and a
close too) is refused while it is set, cancels still work; unlock lifts only what the gateway set;
an unreadable record counts as set."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.control import broker_suspension
from gateway.errors import Forbidden
from gateway.model import AssetClass, OrderIntent, OrderReplace, OrderType, Side, TimeInForce
from gateway.venues.paper import PaperVenue


def limit_buy() -> OrderIntent:
    return OrderIntent("AAPL", AssetClass.US_EQUITY, Side.BUY, OrderType.LIMIT, TimeInForce.DAY, qty=Decimal(1),
                       limit_price=Decimal(100))


async def test_suspend_refuses_new_orders_replaces_and_closes_but_not_cancels(tmp_path):
    venue = PaperVenue(seed_marks=True)
    resting = await venue.submit_order(limit_buy())
    record = await broker_suspension.suspend(venue, tmp_path, "leak", "test")
    assert record.suspended and broker_suspension.read_record(tmp_path).reason == "leak"
    for attempt in (
        venue.submit_order(limit_buy()),
        venue.replace_order(resting.id, OrderReplace(limit_price=Decimal(101))),
        venue.close_position("AAPL"),
        venue.close_all_positions(),
    ):
        with pytest.raises(Forbidden, match="suspend_trade"):
            await attempt
    await venue.cancel_order(resting.id)  # risk-reducing: still allowed
    assert await broker_suspension.lift(venue, tmp_path) is True
    assert (await venue.submit_order(limit_buy())).symbol == "AAPL"
    assert broker_suspension.read_record(tmp_path).suspended is False


async def test_lift_touches_nothing_the_gateway_did_not_set(tmp_path):
    venue = PaperVenue(seed_marks=True)
    await venue.update_account_configurations({"suspend_trade": True})  # set by someone else
    assert await broker_suspension.lift(venue, tmp_path) is False
    assert (await venue.account_configurations())["suspend_trade"] is True


def test_an_unreadable_record_counts_as_set(tmp_path):
    broker_suspension.record_path(tmp_path).write_bytes(b"{not json")
    record = broker_suspension.read_record(tmp_path)
    assert record.suspended is True and "unreadable" in record.reason
