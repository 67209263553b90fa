"""The read path's parts on their own: the seeded price path, the cache with coalescing, the
per-address limiter, and the account-configuration policy."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.errors import Forbidden, InvalidRequest
from gateway.market import DataKind, NotServed, SeriesQuery, TimeFrame, TimeUnit
from gateway.market_data import AccountService, AddressLimiter, MarketReads, RateLimitExceeded
from gateway.model import AssetClass, Caller
from gateway.venues.paper import PaperVenue
from gateway.venues.paper_prices import PathConfig, PricePath

NOW = datetime(2026, 3, 2, 15, 30, 7, tzinfo=timezone.utc)
CALLER = Caller(key_id="GKTEST", dialect="alpaca")


def bars(path: PricePath, mark: str = "100", minutes: int = 120, frame=TimeFrame(1, TimeUnit.MINUTE), limit=1000):
    query = SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), NOW - timedelta(minutes=minutes), NOW,
                        limit=limit, timeframe=frame)
    return path.page(query, {"AAPL": Decimal(mark)}, NOW, lambda s: Decimal("0.01"), lambda s: 1000.0)


def test_the_path_is_deterministic_for_a_seed_and_differs_between_seeds():
    first, again = bars(PricePath(PathConfig(seed=1))), bars(PricePath(PathConfig(seed=1)))
    other = bars(PricePath(PathConfig(seed=2)))
    assert first == again
    assert [b.close for b in first.items["AAPL"]] != [b.close for b in other.items["AAPL"]]


def test_the_bar_containing_now_closes_at_the_mark_and_history_scales_with_a_pin():
    page = bars(PricePath())
    assert page.items["AAPL"][-1].close == Decimal("100.00")
    assert page.items["AAPL"][-1].t == datetime(2026, 3, 2, 15, 30, tzinfo=timezone.utc)
    pinned = bars(PricePath(), mark="200")
    ratio = [p.close / b.close for p, b in zip(pinned.items["AAPL"], page.items["AAPL"], strict=True)]
    assert all(abs(r - 2) < Decimal("0.001") for r in ratio)


def test_volatility_sets_how_far_the_path_moves():
    calm = bars(PricePath(PathConfig(daily_volatility=0.001)), minutes=1440)
    wild = bars(PricePath(PathConfig(daily_volatility=0.2)), minutes=1440)

    def spread(page):
        closes = [b.close for b in page.items["AAPL"]]
        return max(closes) - min(closes)

    assert spread(wild) > 10 * spread(calm)
    flat = bars(PricePath(PathConfig(daily_volatility=0)), minutes=30)
    assert {b.close for b in flat.items["AAPL"]} == {Decimal("100.00")}


def test_bars_are_well_formed_and_pages_continue_where_they_stopped():
    path = PricePath()
    whole = bars(path, minutes=300, limit=1000).items["AAPL"]
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in whole)
    assert all(a.close == b.open for a, b in zip(whole, whole[1:], strict=False))
    first = bars(path, minutes=300, limit=120)
    assert first.next_page_token == "0:120"
    query = SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), NOW - timedelta(minutes=300), NOW, limit=1000,
                        page_token=first.next_page_token)
    rest = path.page(query, {"AAPL": Decimal(100)}, NOW, lambda s: Decimal("0.01"), lambda s: 1000.0)
    assert first.items["AAPL"] + rest.items["AAPL"] == whole and rest.next_page_token is None


def test_a_query_refuses_oversized_and_malformed_ranges():
    with pytest.raises(InvalidRequest, match="too large"):
        SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), NOW - timedelta(days=20000), NOW)
    with pytest.raises(InvalidRequest, match="end must not be before start"):
        SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), NOW, NOW - timedelta(days=1))
    with pytest.raises(InvalidRequest, match="limit"):
        SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), NOW - timedelta(days=1), NOW, limit=10_001)
    with pytest.raises(InvalidRequest, match="timeframe"):
        TimeFrame(90, TimeUnit.MINUTE)
    with pytest.raises(InvalidRequest, match="page_token"):
        query = SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), NOW - timedelta(days=1), NOW, page_token="x")
        PricePath().page(query, {"AAPL": Decimal(1)}, NOW, lambda s: Decimal("0.01"), lambda s: 1.0)


class CountingVenue(PaperVenue):
    """The real paper venue, counting its latest-trade calls and holding each until released."""

    def __init__(self):
        super().__init__(seed_marks=True)
        self.calls = 0
        self.release = asyncio.Event()

    async def latest_trades(self, asset_class, symbols):
        self.calls += 1
        await self.release.wait()
        return await super().latest_trades(asset_class, symbols)


async def test_identical_requests_share_one_call_and_the_answer_is_cached_for_the_ttl():
    venue, clock = CountingVenue(), [0.0]
    reads = MarketReads(venue, ttl_s=1.0, monotonic=lambda: clock[0])
    waiting = [asyncio.ensure_future(reads.latest_trades(AssetClass.US_EQUITY, ["AAPL"])) for _ in range(20)]
    await asyncio.sleep(0)
    venue.release.set()
    answers = await asyncio.gather(*waiting)
    assert venue.calls == 1 and all(a["AAPL"].price == Decimal(190) for a in answers)
    await reads.latest_trades(AssetClass.US_EQUITY, ["AAPL"])
    assert venue.calls == 1
    clock[0] = 1.5
    await reads.latest_trades(AssetClass.US_EQUITY, ["AAPL"])
    assert venue.calls == 2


async def test_a_waiter_that_gives_up_does_not_cancel_the_others():
    venue = CountingVenue()
    reads = MarketReads(venue)
    impatient = asyncio.ensure_future(reads.latest_trades(AssetClass.US_EQUITY, ["AAPL"]))
    patient = asyncio.ensure_future(reads.latest_trades(AssetClass.US_EQUITY, ["AAPL"]))
    await asyncio.sleep(0)
    impatient.cancel()
    venue.release.set()
    assert (await patient)["AAPL"].price == Decimal(190) and venue.calls == 1


async def test_failures_are_shared_but_not_cached():
    venue = PaperVenue()  # a cash account has no funding rates
    reads = MarketReads(venue)
    for _ in range(2):
        with pytest.raises(NotServed, match="funding"):
            await reads.funding_rate("BTC/USD")
    assert reads.upstream_calls == 2


def test_the_limiter_refills_and_says_when():
    clock = [0.0]
    limiter = AddressLimiter(per_min=60, burst=3, monotonic=lambda: clock[0])
    for _ in range(3):
        limiter.take("10.0.0.1")
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.take("10.0.0.1")
    assert refused.value.retry_after_s == 1
    limiter.take("10.0.0.2")  # another address has its own budget
    clock[0] = 1.0
    limiter.take("10.0.0.1")
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.take("10.0.0.1", cost=40)
    assert refused.value.retry_after_s == 40


class Audit:
    def __init__(self):
        self.records = []

    async def append(self, type, data):
        self.records.append((type, data))


@pytest.mark.parametrize(
    ("start", "change", "why"),
    [
        ({"no_shorting": True}, {"no_shorting": False}, "short selling"),
        ({"suspend_trade": True}, {"suspend_trade": False}, "suspended"),
        ({"dtbp_check": "both"}, {"dtbp_check": "entry"}, "fewer orders"),
        ({"pdt_check": "entry"}, {"pdt_check": "exit"}, "fewer orders"),
        ({"max_margin_multiplier": "1"}, {"max_margin_multiplier": "4"}, "raise the limit"),
        ({"max_options_trading_level": 1}, {"max_options_trading_level": 3}, "raise the limit"),
        ({"ptp_no_exception_entry": False}, {"ptp_no_exception_entry": True}, "partnership"),
    ],
)
async def test_loosening_a_broker_protection_is_refused_and_recorded(start, change, why):
    venue, audit = PaperVenue(), Audit()
    await venue.update_account_configurations(start)
    service = AccountService(venue, audit=audit)
    with pytest.raises(Forbidden, match=why):
        await service.update_account_configurations(CALLER, change)
    assert (await venue.account_configurations())[next(iter(change))] == next(iter(start.values()))
    assert audit.records[0][0] == "account.configuration_refused"


async def test_tightening_is_forwarded_and_audited_and_a_read_only_key_may_not_change_anything():
    venue, audit = PaperVenue(), Audit()
    service = AccountService(venue, audit=audit, scopes=lambda key: frozenset({"trade"}))
    updated = await service.update_account_configurations(
        CALLER, {"no_shorting": True, "dtbp_check": "both", "max_margin_multiplier": "2", "fractional_trading": False}
    )
    assert updated["no_shorting"] is True and updated["max_margin_multiplier"] == "2"
    assert audit.records == [(
        "account.configured",
        {"key_id": "GKTEST", "dialect": "alpaca",
         "changes": {"no_shorting": True, "dtbp_check": "both", "max_margin_multiplier": "2", "fractional_trading": False},
         "before": {"no_shorting": False, "dtbp_check": "entry", "max_margin_multiplier": "4", "fractional_trading": True}},
    )]
    read_only = AccountService(venue, audit=audit, scopes=lambda key: frozenset())
    with pytest.raises(Forbidden, match="read-only"):
        await read_only.update_account_configurations(CALLER, {"no_shorting": True})
    with pytest.raises(Forbidden, match="read-only"):
        await read_only.create_watchlist(CALLER, "x", [])
    with pytest.raises(InvalidRequest, match="unknown account configuration"):
        await service.update_account_configurations(CALLER, {"allow_everything": True})


async def test_the_live_walk_moves_unpinned_marks_and_leaves_pinned_ones():
    venue = PaperVenue(seed_marks=True, walk_every_s=0.01, prices=PricePath(PathConfig(daily_volatility=0.5, tick_s=1)))
    await venue.set_prices({"SPY": Decimal("500")})
    start = venue.engine.marks()
    await venue.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5  # the path steps once a second of wall-clock time
        while venue.engine.marks()["AAPL"] == start["AAPL"]:
            assert asyncio.get_running_loop().time() < deadline, "the mark never moved"
            await asyncio.sleep(0.05)
    finally:
        await venue.close()
    assert venue.engine.marks()["SPY"] == Decimal("500")
    step = PricePath(PathConfig(daily_volatility=0.5)).step
    assert step("AAPL", Decimal(190), NOW, NOW + timedelta(seconds=30), Decimal("0.01")) == step(
        "AAPL", Decimal(190), NOW, NOW + timedelta(seconds=30), Decimal("0.01"))  # deterministic for a seed
    assert step("AAPL", Decimal(190), NOW, NOW + timedelta(seconds=2), Decimal("0.01")) == Decimal(190)  # within one step


def test_pages_run_across_symbols_in_order_and_leave_out_unknown_ones():
    path = PricePath()
    marks = {"AAPL": Decimal(190), "MSFT": Decimal(420)}
    query = SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("MSFT", "ZZZZ", "AAPL"), NOW - timedelta(minutes=30), NOW,
                        limit=25)
    pages, token = [], None
    while True:
        q = SeriesQuery(query.kind, query.asset_class, query.symbols, query.start, query.end, limit=25, page_token=token)
        page = path.page(q, marks, NOW, lambda s: Decimal("0.01"), lambda s: 1000.0)
        pages.append(page)
        token = page.next_page_token
        if token is None:
            break
    assert [sorted(p.items) for p in pages] == [["AAPL"], ["AAPL", "MSFT"], ["MSFT"]]
    aapl = [b for p in pages for b in p.items.get("AAPL", [])]
    msft = [b for p in pages for b in p.items.get("MSFT", [])]
    assert len(aapl) == len(msft) == 30 and aapl[-1].close == 190 and msft[-1].close == 420


async def test_without_an_audit_log_no_change_is_made_and_the_broker_itself_applies_every_change():
    venue = PaperVenue()
    with pytest.raises(Forbidden, match="no audit log"):
        await AccountService(venue).update_account_configurations(CALLER, {"no_shorting": True})
    assert (await venue.account_configurations())["no_shorting"] is False
    broker = AccountService(venue, judge=False)  # the paper broker: its owner may loosen too
    await broker.update_account_configurations(CALLER, {"suspend_trade": True})
    assert (await broker.update_account_configurations(CALLER, {"suspend_trade": False}))["suspend_trade"] is False


async def test_large_pages_are_not_kept_and_expired_answers_are_dropped():
    clock = [0.0]
    reads = MarketReads(PaperVenue(seed_marks=True), ttl_s=1.0, monotonic=lambda: clock[0])
    end = datetime.now(timezone.utc)
    big = SeriesQuery(DataKind.BARS, AssetClass.US_EQUITY, ("AAPL",), end - timedelta(days=3), end, limit=5000)
    await reads.series(big)
    await reads.series(big)
    assert reads.upstream_calls == 2  # 5,000 bars: coalesced while in flight, never kept
    await reads.latest_trades(AssetClass.US_EQUITY, ["AAPL"])
    clock[0] = 5.0
    await reads.latest_trades(AssetClass.US_EQUITY, ["MSFT"])
    assert len(reads._cache) == 1  # the expired AAPL answer went when the MSFT one came in
