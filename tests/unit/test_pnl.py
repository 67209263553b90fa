"""FIFO P&L attribution against a scenario computed by hand: two bots, partial fills, and a
position one bot opened closed by the other bot's order."""

from decimal import Decimal as D

import pytest

from gateway.ledger.pnl import Fill, attribute


def fills():
    t = iter(f"2026-01-01T10:{m:02d}:00.000000Z" for m in range(60))
    return [
        # Bot A buys 10 AAPL in two partial fills: 6 @ 100, then 4 @ 101.
        Fill(next(t), "A", "AAPL", "buy", D(6), D(100), "a1"),
        Fill(next(t), "A", "AAPL", "buy", D(4), D(101), "a1"),
        # Bot B buys 5 @ 102.
        Fill(next(t), "B", "AAPL", "buy", D(5), D(102), "b1"),
        # Bot B sells 12 in two partial fills: 8 @ 105 closes A's 6@100 (+30) and 2 of A's 4@101 (+8);
        # 4 @ 104 closes A's last 2@101 (+6) and 2 of B's 5@102 (+4).
        Fill(next(t), "B", "AAPL", "sell", D(8), D(105), "b2"),
        Fill(next(t), "B", "AAPL", "sell", D(4), D(104), "b2"),
        # Bot A sells 1 @ 99: closes 1 of B's remaining 3@102 (-3, B's loss).
        Fill(next(t), "A", "AAPL", "sell", D(1), D(99), "a2"),
        # Bot B round-trips MSFT at a loss: 3 @ 50 then 3 @ 48 (-6).
        Fill(next(t), "B", "MSFT", "buy", D(3), D(50), "b3"),
        Fill(next(t), "B", "MSFT", "sell", D(3), D(48), "b4"),
    ]


def test_each_exit_is_linked_to_the_entries_it_closes_fifo():
    result = attribute(fills(), marks={"AAPL": D(110)})
    links = [(l.exit_order, l.entry_bot, l.entry_order, l.qty, l.entry_price, l.exit_price, l.pnl) for l in result.links]
    assert links == [
        ("b2", "A", "a1", D(6), D(100), D(105), D(30)),
        ("b2", "A", "a1", D(2), D(101), D(105), D(8)),
        ("b2", "A", "a1", D(2), D(101), D(104), D(6)),
        ("b2", "B", "b1", D(2), D(102), D(104), D(4)),
        ("a2", "B", "b1", D(1), D(102), D(99), D(-3)),
        ("b4", "B", "b3", D(3), D(50), D(48), D(-6)),
    ]


def test_realized_unrealized_and_win_rate_per_bot():
    result = attribute(fills(), marks={"AAPL": D(110)})
    a, b = result.by_bot["A"], result.by_bot["B"]
    # A's lots were all closed by B's order: the P&L is A's, B only closed them.
    assert (a.realized, a.unrealized, a.trades, a.wins, a.win_rate, a.open_qty) == (D(44), D(0), 3, 3, D(1), D(0))
    # B keeps 2 AAPL @ 102, marked at 110: +16 unrealized.
    assert (b.realized, b.unrealized, b.trades, b.wins, b.open_qty) == (D(-5), D(16), 3, 1, D(2))
    assert b.win_rate == D(1) / D(3)


def test_per_symbol_and_per_bot_symbol():
    result = attribute(fills(), marks={"AAPL": D(110)})
    assert (result.by_symbol["AAPL"].realized, result.by_symbol["AAPL"].unrealized) == (D(45), D(16))
    assert result.by_symbol["MSFT"].realized == D(-6)
    assert result.by_bot_symbol[("B", "AAPL")].realized == D(1)
    assert result.by_bot_symbol[("B", "MSFT")].realized == D(-6)
    assert result.by_bot_symbol[("A", "AAPL")].realized == D(44)


def test_a_fill_beyond_the_open_lots_opens_a_lot_the_other_way():
    result = attribute([
        Fill("t1", "A", "BTC/USD", "buy", D("0.5"), D(100)),
        Fill("t2", "B", "BTC/USD", "sell", D("2"), D(110)),
        Fill("t3", "A", "BTC/USD", "buy", D("1.5"), D(90)),
    ])
    assert result.by_bot["A"].realized == D(5)  # 0.5 * (110 - 100)
    assert result.by_bot["B"].realized == D(30)  # B's short 1.5 @ 110 covered by A's buy @ 90
    assert result.by_bot["A"].open_qty == D(0) and result.by_bot["B"].open_qty == D(0)


def test_without_marks_nothing_is_unrealized_and_no_trades_means_no_win_rate():
    result = attribute([Fill("t1", "A", "ETH/USD", "buy", D(1), D(10))])
    assert result.by_bot["A"].unrealized == D(0)
    assert result.by_bot["A"].win_rate is None
    assert result.to_json()["by_bot"]["A"]["win_rate"] is None


def test_a_non_positive_fill_is_refused():
    with pytest.raises(ValueError, match="positive"):
        attribute([Fill("t1", "A", "X", "buy", D(0), D(1))])
