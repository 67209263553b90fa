"""The dashboard's pieces on their own: fill records from ledger changes, the decision feed
tailed from a real audit log (paging, filters, partial lines), and the SVG charts."""

from decimal import Decimal as D


from gateway.admin.dashboard.feed import DecisionFeed
from gateway.admin.dashboard.history import History, equity_svg, exposure_svg
from gateway.admin.fills import FILL_RECORD, FillRecorder, fills_from_log
from gateway.audit.log import AuditLog
from gateway.ledger import Change, Role
from gateway.model import AssetClass, OrderType, Side


class Submitted:
    def __init__(self):
        self.records = []

    def __call__(self, type, data):
        self.records.append((type, data))
        return _Done()


class _Done:
    """A queued audit write that already completed."""

    def add_done_callback(self, fn):
        fn(self)

    def cancelled(self):
        return False

    def exception(self):
        return None


def order(filled: str, avg: str | None, client_id: str = "c1", legs=()):
    from gateway.ledger.orders import LedgerOrder

    o = LedgerOrder(client_order_id=client_id, symbol="AAPL", asset_class=AssetClass.US_EQUITY, side=Side.BUY,
                    type=OrderType.MARKET, role=Role.ENTRY, qty=D(10), key_id="GKBOT")
    o.filled_qty = D(filled)
    o.filled_avg_price = D(avg) if avg else None
    o.legs = list(legs)
    return o


def test_each_new_fill_is_one_record_with_its_own_price():
    submit = Submitted()
    recorder = FillRecorder(submit)
    recorder(Change(order("4", "100")))
    recorder(Change(order("4", "100")))  # nothing new
    recorder(Change(order("10", "101.2")))  # 6 more at (1012 - 400) / 6 = 102
    assert [(t, d["qty"], d["price"], d["key_id"], d["side"]) for t, d in submit.records] == [
        (FILL_RECORD, "4", "100", "GKBOT", "buy"),
        (FILL_RECORD, "6", "102", "GKBOT", "buy"),
    ]


def test_fills_already_in_the_log_are_not_recorded_again():
    from gateway.ledger.pnl import Fill

    submit = Submitted()
    recorder = FillRecorder(submit)
    recorder.seed([Fill("t", "GKBOT", "AAPL", "buy", D(4), D(100), "c1")])
    recorder(Change(order("4", "100")))
    assert submit.records == []
    recorder(Change(None))  # stream status changes carry no order
    assert submit.records == []


async def test_the_feed_tails_the_audit_log_pages_and_filters(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        for i in range(120):
            await log.append("order.decision", {
                "key_id": "GKA" if i % 2 else "GKB", "decision": "deny" if i % 10 == 0 else "allow",
                "codes": ["max_position_pct"] if i % 10 == 0 else [], "messages": [],
                "intent": {"symbol": "AAPL", "side": "buy", "qty": str(i + 1)},
            })
        await log.append(FILL_RECORD, {"key_id": "GKA", "client_order_id": "c", "symbol": "AAPL", "asset_class": "us_equity",
                                       "side": "buy", "role": "entry", "qty": "2", "price": "100"})
        await log.append("gateway.stop", {})
    feed = DecisionFeed(path)
    assert feed.poll() == 120 and feed.poll() == 0
    first = feed.page(limit=50)
    assert first["total"] == 120 and [r["qty"] for r in first["items"][:2]] == ["120", "119"]
    third = feed.page(offset=100, limit=50)
    assert [r["qty"] for r in third["items"]][-1] == "1" and len(third["items"]) == 20
    denied = feed.page(code="max_position_pct")
    assert denied["total"] == 12 and {r["decision"] for r in denied["items"]} == {"deny"}
    assert feed.page(bot="GKA")["total"] == 60
    assert feed.codes() == ["max_position_pct"]
    assert [(f.bot, f.qty, f.price) for f in feed.fills] == [("GKA", D(2), D(100))]
    assert [(f.bot, f.qty) for f in fills_from_log(path)] == [("GKA", D(2))]
    assert fills_from_log(path, since="2999-01-01") == []


def test_the_feed_waits_for_the_end_of_a_line(tmp_path):
    path = tmp_path / "audit.log"
    import asyncio

    async def write():
        async with AuditLog(path) as log:
            await log.append("order.decision", {"key_id": "GKA", "decision": "allow", "codes": [], "intent": {}})

    asyncio.run(write())
    whole = path.read_bytes()
    path.write_bytes(whole[:-20])
    feed = DecisionFeed(path)
    assert feed.poll() == 0
    path.write_bytes(whole)
    assert feed.poll() == 1


def test_charts_are_svg_with_the_values_named():
    history = History(max_samples=3)
    assert "not enough samples" in equity_svg(history)
    for i, equity in enumerate(("100000", "99000", "101000", "102000")):
        history.sample(D(equity), D(equity) / 10, at=1000.0 + 60 * i)
    assert len(history.samples) == 3  # bounded
    svg = equity_svg(history)
    assert svg.startswith("<svg") and "<polyline" in svg and "102000.00" in svg and "99000.00" in svg
    assert "11.00%" in exposure_svg(history) and "9.00%" in exposure_svg(history)  # a flat line gets a ±1 band
    history.sample(D(0), D(0))
    assert history.samples[-1].exposure_pct == 0
