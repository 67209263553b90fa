"""BrokerCountdown (the exchange-side dead man's switch) driving a real futures PaperVenue, with a
hand-turned clock: armed when a symbol becomes traded, renewed once per interval and not more
often, stopped when the symbol is no longer traded, a failed beat shown and retried."""

from __future__ import annotations

from decimal import Decimal

from gateway.guards.broker_countdown import BEATS_PER_COUNTDOWN, BrokerCountdown
from gateway.venues.paper import PaperVenue


class CountingPaperVenue(PaperVenue):
    """The real paper venue, remembering each countdown call it served."""

    def __init__(self):
        super().__init__(starting_equity=Decimal(100000), seed_marks=True, futures=True)
        self.calls: list[tuple[str, int]] = []

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int) -> None:
        await super().countdown_cancel_all(symbol, countdown_ms)
        self.calls.append((symbol, countdown_ms))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_arms_renews_per_interval_and_stops_untraded_symbols():
    venue, clock, traded = CountingPaperVenue(), Clock(), {"BTC/USDT"}
    heartbeat = BrokerCountdown(venue, lambda: traded, 60, clock=clock)
    assert heartbeat.interval_s == 60 / BEATS_PER_COUNTDOWN == 15

    await heartbeat.beat_once()
    assert venue.calls == [("BTC/USDT", 60000)] and venue.countdowns() == ["BTC/USDT"]
    clock.now += 14.9
    await heartbeat.beat_once()
    assert len(venue.calls) == 1  # not due yet: no extra request weight
    clock.now += 0.1
    await heartbeat.beat_once()
    assert venue.calls[-1] == ("BTC/USDT", 60000) and len(venue.calls) == 2

    traded.add("ETH/USDT")  # a new symbol is armed at once, not at the next interval
    await heartbeat.beat_once()
    assert venue.calls[-1] == ("ETH/USDT", 60000) and len(venue.calls) == 3

    traded.discard("BTC/USDT")
    await heartbeat.beat_once()
    assert venue.calls[-1] == ("BTC/USDT", 0)
    assert venue.countdowns() == ["ETH/USDT"]
    shown = heartbeat.status()
    assert shown["countdown_s"] == 60 and list(shown["symbols"]) == ["ETH/USDT"]
    assert shown["symbols"]["ETH/USDT"]["last_beat"] is not None and shown["symbols"]["ETH/USDT"]["error"] is None
    await venue.close()


async def test_a_failed_beat_is_shown_and_retried_at_the_next_tick():
    venue, clock, traded = CountingPaperVenue(), Clock(), {"NOPE/USDT"}
    heartbeat = BrokerCountdown(venue, lambda: traded, 30, clock=clock)
    await heartbeat.beat_once()
    row = heartbeat.status()["symbols"]["NOPE/USDT"]
    assert row["last_beat"] is None and "unknown symbol" in row["error"]
    venue.engine.set_prices({"NOPE/USDT": "1"})  # the venue learns the symbol
    await heartbeat.beat_once()  # no interval wait after a failure
    row = heartbeat.status()["symbols"]["NOPE/USDT"]
    assert row["error"] is None and row["last_beat"] is not None
    assert venue.calls == [("NOPE/USDT", 30000)]
    await venue.close()


async def test_an_expired_countdown_cancels_only_that_symbols_orders():
    from gateway.model import AssetClass, OrderIntent, OrderQuery, OrderType, Side, TimeInForce

    venue = CountingPaperVenue()
    btc = await venue.submit_order(
        OrderIntent("BTC/USDT", AssetClass.CRYPTO, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, qty=Decimal("0.01"),
                    limit_price=Decimal(50000))
    )
    stop = await venue.submit_order(
        OrderIntent("BTC/USDT", AssetClass.CRYPTO, Side.BUY, OrderType.STOP, TimeInForce.GTC, qty=Decimal("0.01"),
                    stop_price=Decimal(70000))
    )
    eth = await venue.submit_order(
        OrderIntent("ETH/USDT", AssetClass.CRYPTO, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, qty=Decimal("0.1"),
                    limit_price=Decimal(2000))
    )
    venue._countdown_expired("BTC/USDT")  # what the loop's timer calls when the countdown runs out
    open_ids = {o.id for o in await venue.list_orders(OrderQuery(status="open", limit=500))}
    assert open_ids == {eth.id}
    assert (await venue.get_order(btc.id)).status.value == "canceled"
    assert (await venue.get_order(stop.id)).status.value == "canceled"
    await venue.close()


async def test_status_text_shows_the_seconds_and_each_symbols_last_beat(capsys):
    from gateway.cli import _print_kill_switch

    venue, clock = CountingPaperVenue(), Clock()
    heartbeat = BrokerCountdown(venue, lambda: {"BTC/USDT", "NOPE/USDT"}, 8, clock=clock)
    await heartbeat.beat_once()
    _print_kill_switch({"countdown": heartbeat.status(), "suspend_trade": {"suspended": False}})
    out = capsys.readouterr().out
    assert "broker countdown: 8 s, renewed every 2.0 s" in out
    assert "BTC/USDT" in out and "last beat 20" in out
    assert "NOPE/USDT" in out and "last attempt failed" in out
    assert "broker suspend_trade: not set by the gateway" in out
    _print_kill_switch({"countdown": None, "suspend_trade": {"suspended": True, "since": "t", "reason": "leak"}})
    out = capsys.readouterr().out
    assert "broker countdown: off" in out and "broker suspend_trade: SET since t (leak)" in out
    await venue.close()
