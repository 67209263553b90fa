"""The book the rules judge: positions, and what every open order the ledger counts adds.

The ledger (``gateway/ledger``) owns the orders; it tells the book, one ``Counted`` share per
order, what each open order adds, and takes exactly that share back when the order fills,
closes or is replaced. So nothing can go negative and nothing is forgotten, however many
orders rest.

Every check is O(1) in the size of the book: each symbol keeps its own worst-case figures and
the account keeps running totals, updated by the difference whenever one symbol changes.
Only a reconcile (a fresh snapshot from the venue) walks the whole book.

Worst case: for a symbol with position ``q`` and open buy/sell orders, if every open buy
filled the position would be ``q + buys``; if every sell filled, ``q - sells``. A symbol's
exposure is the larger of the two magnitudes, in notional (quantity x price x contract
multiplier). Capital committed is that notional divided by the symbol's effective leverage
(1 for cash instruments; the set leverage for futures).

Running totals kept (all updated by difference, never re-summed per order):

- ``gross_notional`` / ``committed``: every book's worst notional, and that over leverage;
- ``gross_by_class`` / ``committed_by_class``: the same per asset class;
- ``committed_by_sector``: committed capital per sector. The sector map comes from the policy
  (``set_sectors``, a one-off recount when a different map is installed); a symbol the map does
  not name is in sector ``unknown``; an option falls back to its underlying's entry;
- ``pending_buy_committed``: capital of every pending buy (notional over leverage), for the cash
  buffer;
- ``occupied`` / ``occupied_by_class``: symbols with a position or any pending order;
- ``open_positions``: symbols with a non-zero position.

The gateway's own protective stops are kept apart (``protective_*``): they are sized to the
position and never allowed to open one, so they add no exposure, and they do not use up the
bot's *exit capacity* (the position minus the other open exits on the closing side).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ..model import (
    Account,
    AssetClass,
    Side,
    contract_multiplier,
    parse_occ,
)

ZERO = Decimal(0)
ONE = Decimal(1)
UNKNOWN_SECTOR = "unknown"
# contract_multiplier per class, looked up rather than rebuilt on every valuation.
MULTIPLIER: dict[AssetClass, Decimal] = {cls: contract_multiplier(cls) for cls in AssetClass}


@dataclass(slots=True)
class SymbolBook:
    """One symbol: position and pending orders, in quantity and notional."""

    symbol: str
    asset_class: AssetClass
    mark: Decimal = ZERO
    position_qty: Decimal = ZERO  # signed
    pending_buy_qty: Decimal = ZERO
    pending_sell_qty: Decimal = ZERO
    pending_buy_notional: Decimal = ZERO
    pending_sell_notional: Decimal = ZERO
    # The gateway's own protective stops (not exposure: sized to the position, reduce-only).
    protective_buy_qty: Decimal = ZERO
    protective_sell_qty: Decimal = ZERO
    leverage: Decimal = ONE
    sector: str = UNKNOWN_SECTOR
    # What this book last added to the portfolio's running totals (see _adjust_totals).
    counted_worst: Decimal = ZERO
    counted_committed: Decimal = ZERO
    counted_buy: Decimal = ZERO
    counted_open: bool = False
    counted_occupied: bool = False
    counted_sector: str = UNKNOWN_SECTOR

    @property
    def multiplier(self) -> Decimal:
        return MULTIPLIER[self.asset_class]

    @property
    def occupied(self) -> bool:
        """A position or a pending order: the symbol counts toward open positions and universe."""
        return self.position_qty != 0 or self.pending_buy_qty > 0 or self.pending_sell_qty > 0

    def worst_notional(
        self, buy_qty: Decimal = ZERO, buy_notional: Decimal = ZERO, sell_qty: Decimal = ZERO, sell_notional: Decimal = ZERO
    ) -> Decimal:
        """Largest |position| notional if every pending order (plus the given extra) filled."""
        position_notional = self.position_qty * self.mark * MULTIPLIER[self.asset_class]
        long_case = position_notional + self.pending_buy_notional + buy_notional
        short_case = position_notional - self.pending_sell_notional - sell_notional
        return max(abs(long_case), abs(short_case))

    def exit_capacity(self, side: Side) -> Decimal:
        """How much an order on ``side`` can close: the position on the other side, minus the
        other open orders on this side (the gateway's own stop excepted: it steps aside)."""
        if side is Side.SELL:
            return max(ZERO, self.position_qty - self.pending_sell_qty) if self.position_qty > 0 else ZERO
        return max(ZERO, -self.position_qty - self.pending_buy_qty) if self.position_qty < 0 else ZERO

    def reduces_only(self, side: Side, qty: Decimal) -> bool:
        """True when the order fits in the exit capacity: it can only shrink the position."""
        return ZERO < qty <= self.exit_capacity(side)


@dataclass(frozen=True, slots=True)
class Counted:
    """The share of the book one order holds: its unfilled quantity and that quantity's
    notional, on its side. The ledger keeps it on the order so it takes back exactly this."""

    symbol: str
    asset_class: AssetClass
    side: Side
    qty: Decimal
    notional: Decimal
    protective: bool = False


@dataclass(slots=True)
class Projection:
    """What one order would do to the book; computed without changing anything. Treat it as
    read-only (not frozen only because frozen dataclasses are slower to build, and one is
    built per check)."""

    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    notional: Decimal  # qty x price x multiplier
    reduces_only: bool
    asset_class: AssetClass
    sector: str
    new_symbol: bool  # the symbol has no position and no pending order yet
    equity: Decimal
    symbol_notional_before: Decimal
    symbol_notional_after: Decimal
    symbol_committed_before: Decimal
    symbol_committed_after: Decimal
    gross_notional_after: Decimal
    committed_after: Decimal
    leverage: Decimal

    @property
    def committed_delta(self) -> Decimal:
        """Capital this order adds to its symbol's (and so its class's and sector's) total."""
        return self.symbol_committed_after - self.symbol_committed_before

    @property
    def notional_delta(self) -> Decimal:
        return self.symbol_notional_after - self.symbol_notional_before


@dataclass
class Portfolio:
    """Mutable book plus running totals. Not thread-safe: owned by one event loop."""

    equity: Decimal = ZERO
    last_equity: Decimal = ZERO
    cash: Decimal = ZERO
    snapshot_at: float | None = None  # monotonic seconds of the last successful snapshot
    books: dict[str, SymbolBook] = field(default_factory=dict)
    gross_notional: Decimal = ZERO  # sum of every book's worst notional
    committed: Decimal = ZERO  # sum of every book's worst notional / leverage
    open_positions: int = 0
    gross_by_class: dict[AssetClass, Decimal] = field(default_factory=lambda: {c: ZERO for c in AssetClass})
    committed_by_class: dict[AssetClass, Decimal] = field(default_factory=lambda: {c: ZERO for c in AssetClass})
    committed_by_sector: dict[str, Decimal] = field(default_factory=dict)
    pending_buy_committed: Decimal = ZERO
    occupied: int = 0
    occupied_by_class: dict[AssetClass, int] = field(default_factory=lambda: {c: 0 for c in AssetClass})
    _sectors: Mapping[str, str] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------

    def book(self, symbol: str) -> SymbolBook | None:
        return self.books.get(symbol)

    def mark(self, symbol: str) -> Decimal | None:
        book = self.books.get(symbol)
        return book.mark if book is not None and book.mark > 0 else None

    def snapshot_age(self, now_monotonic: float) -> float | None:
        return None if self.snapshot_at is None else now_monotonic - self.snapshot_at

    def sector_of(self, symbol: str, asset_class: AssetClass) -> str:
        """The symbol's sector under the installed map; ``unknown`` when unmapped."""
        sector = self._sectors.get(symbol)
        if sector is None and asset_class is AssetClass.US_OPTION and self._sectors:
            contract = parse_occ(symbol)
            if contract is not None:
                sector = self._sectors.get(contract.root)
        return sector or UNKNOWN_SECTOR

    def committed_in_sector(self, sector: str) -> Decimal:
        return self.committed_by_sector.get(sector, ZERO)

    def project(self, symbol: str, asset_class: AssetClass, side: Side, qty: Decimal, price: Decimal) -> Projection:
        book = self.books.get(symbol)
        if book is None:
            book = SymbolBook(symbol, asset_class, mark=price, sector=self.sector_of(symbol, asset_class))
        mult = MULTIPLIER[asset_class]
        notional = qty * price * mult
        before = book.worst_notional()
        if side is Side.BUY:
            after = book.worst_notional(buy_qty=qty, buy_notional=notional)
        else:
            after = book.worst_notional(sell_qty=qty, sell_notional=notional)
        leverage = book.leverage
        if leverage == ONE:
            committed_before, committed_after = before, after
        else:
            committed_before, committed_after = before / leverage, after / leverage
        return Projection(
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            notional=notional,
            reduces_only=book.reduces_only(side, qty),
            asset_class=book.asset_class,
            sector=book.sector,
            new_symbol=not book.occupied,
            equity=self.equity,
            symbol_notional_before=before,
            symbol_notional_after=after,
            symbol_committed_before=committed_before,
            symbol_committed_after=committed_after,
            gross_notional_after=self.gross_notional - before + after,
            committed_after=self.committed - committed_before + committed_after,
            leverage=book.leverage,
        )

    # -- changing --------------------------------------------------------------------------

    def reserve(self, projection: Projection, asset_class: AssetClass) -> Counted:
        """Count an order that was allowed. Call in the same synchronous step as the check."""
        counted = Counted(projection.symbol, asset_class, projection.side, projection.qty, projection.notional)
        self.count(counted, projection.price)
        return counted

    def count(self, counted: Counted, price: Decimal | None = None) -> None:
        """Add one order's share (the ledger calls this; ``price`` seeds a book with no mark)."""
        self._add(counted, price, 1)

    def uncount(self, counted: Counted) -> None:
        """Take back exactly a share that was counted."""
        self._add(counted, None, -1)

    def set_position(self, symbol: str, asset_class: AssetClass, qty: Decimal, mark: Decimal | None = None) -> None:
        """The position is now ``qty`` (signed): from a fill event or the venue's snapshot."""
        book = self._book(symbol, asset_class, mark)
        book.position_qty = qty
        if mark is not None and mark > 0:
            book.mark = mark
        self._refresh(book)

    def position(self, symbol: str) -> Decimal:
        book = self.books.get(symbol)
        return book.position_qty if book is not None else ZERO

    def set_account(self, account: Account, now_monotonic: float) -> None:
        """Equity, cash and the base of daily P&L from the venue; the book is fresh as of now."""
        self.equity = account.equity
        self.last_equity = account.last_equity
        self.cash = account.cash
        self.snapshot_at = now_monotonic

    def touch(self, now_monotonic: float) -> None:
        """The ledger vouches that the book is current (its event stream is up and reconciled)."""
        if self.snapshot_at is None or now_monotonic > self.snapshot_at:
            self.snapshot_at = now_monotonic

    def set_sectors(self, sectors: Mapping[str, str]) -> bool:
        """Install the policy's sector map. A different map re-assigns every book's sector and
        recounts once (O(n) per policy change, never per order); the same map is a no-op.
        Returns True when it recounted."""
        if sectors is self._sectors or sectors == self._sectors:
            self._sectors = sectors
            return False
        self._sectors = sectors
        for book in self.books.values():
            book.sector = self.sector_of(book.symbol, book.asset_class)
        self._recount()
        return True

    def set_leverage(self, symbol: str, asset_class: AssetClass, leverage: Decimal) -> None:
        """The venue's leverage setting for a symbol changed (futures); totals stay consistent."""
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook(symbol, asset_class, sector=self.sector_of(symbol, asset_class))
        book.leverage = leverage
        self._refresh(book)

    def update_mark(self, symbol: str, asset_class: AssetClass, price: Decimal) -> None:
        """A fresher reference price for one symbol; keeps the totals consistent in O(1)."""
        book = self.books.get(symbol)
        if book is None:
            self.books[symbol] = SymbolBook(symbol, asset_class, mark=price, sector=self.sector_of(symbol, asset_class))
            return
        book.mark = price
        self._refresh(book)

    # -- internals -------------------------------------------------------------------------

    def _book(self, symbol: str, asset_class: AssetClass, price: Decimal | None) -> SymbolBook:
        book = self.books.get(symbol)
        if book is None:
            book = SymbolBook(symbol, asset_class, mark=price or ZERO, sector=self.sector_of(symbol, asset_class))
            self.books[symbol] = book
        elif book.mark <= 0 and price is not None:
            book.mark = price
        return book

    def _add(self, c: Counted, price: Decimal | None, sign: int) -> None:
        book = self._book(c.symbol, c.asset_class, price)
        qty, notional = (c.qty, c.notional) if sign > 0 else (-c.qty, -c.notional)
        if c.protective:
            if c.side is Side.BUY:
                book.protective_buy_qty += qty
            else:
                book.protective_sell_qty += qty
            return  # no exposure: nothing else moves
        if c.side is Side.BUY:
            book.pending_buy_qty += qty
            book.pending_buy_notional += notional
        else:
            book.pending_sell_qty += qty
            book.pending_sell_notional += notional
        self._refresh(book)

    def _refresh(self, book: SymbolBook) -> None:
        """A book changed (pending orders, mark or leverage): move every running total by the
        difference between what the book adds now and what it added before. O(1)."""
        leverage = book.leverage
        worst = book.worst_notional()
        committed = worst if leverage == ONE else worst / leverage
        buy = book.pending_buy_notional
        if buy and leverage != ONE:
            buy = buy / leverage
        is_open = book.position_qty != 0
        occupied = is_open or book.pending_buy_qty > 0 or book.pending_sell_qty > 0
        cls = book.asset_class
        d_worst = worst - book.counted_worst
        d_committed = committed - book.counted_committed
        self.gross_notional += d_worst
        self.committed += d_committed
        self.gross_by_class[cls] += d_worst
        self.committed_by_class[cls] += d_committed
        sectors = self.committed_by_sector
        if book.sector == book.counted_sector:
            sectors[book.sector] = sectors.get(book.sector, ZERO) + d_committed
        else:
            sectors[book.counted_sector] = sectors.get(book.counted_sector, ZERO) - book.counted_committed
            sectors[book.sector] = sectors.get(book.sector, ZERO) + committed
        if buy != book.counted_buy:
            self.pending_buy_committed += buy - book.counted_buy
        if is_open != book.counted_open:
            self.open_positions += 1 if is_open else -1
        if occupied != book.counted_occupied:
            step = 1 if occupied else -1
            self.occupied += step
            self.occupied_by_class[cls] += step
        book.counted_worst, book.counted_committed, book.counted_buy = worst, committed, buy
        book.counted_open, book.counted_occupied, book.counted_sector = is_open, occupied, book.sector

    def _adjust_totals(self, book: SymbolBook, sign: int) -> None:
        """Add (sign=1) or remove (sign=-1) one book's share of every running total. Callers
        remove, change the book, then add: each total moves by the difference only. What a
        book added is remembered on the book, so removing it costs no recomputation."""
        cls = book.asset_class
        sectors = self.committed_by_sector
        if sign < 0:
            worst, committed = book.counted_worst, book.counted_committed
            self.gross_notional -= worst
            self.committed -= committed
            self.gross_by_class[cls] -= worst
            self.committed_by_class[cls] -= committed
            sectors[book.counted_sector] = sectors.get(book.counted_sector, ZERO) - committed
            if book.counted_buy:
                self.pending_buy_committed -= book.counted_buy
            if book.counted_open:
                self.open_positions -= 1
            if book.counted_occupied:
                self.occupied -= 1
                self.occupied_by_class[cls] -= 1
            book.counted_worst = book.counted_committed = book.counted_buy = ZERO
            book.counted_open = book.counted_occupied = False
            return
        worst = book.worst_notional()
        leverage = book.leverage
        committed = worst if leverage == ONE else worst / leverage
        buy = book.pending_buy_notional
        if buy and leverage != ONE:
            buy = buy / leverage
        is_open = book.position_qty != 0
        occupied = is_open or book.pending_buy_qty > 0 or book.pending_sell_qty > 0
        self.gross_notional += worst
        self.committed += committed
        self.gross_by_class[cls] += worst
        self.committed_by_class[cls] += committed
        sectors[book.sector] = sectors.get(book.sector, ZERO) + committed
        if buy:
            self.pending_buy_committed += buy
        if is_open:
            self.open_positions += 1
        if occupied:
            self.occupied += 1
            self.occupied_by_class[cls] += 1
        book.counted_worst, book.counted_committed, book.counted_buy = worst, committed, buy
        book.counted_open, book.counted_occupied, book.counted_sector = is_open, occupied, book.sector

    def _recount(self) -> None:
        self.gross_notional = ZERO
        self.committed = ZERO
        self.open_positions = 0
        self.gross_by_class = {c: ZERO for c in AssetClass}
        self.committed_by_class = {c: ZERO for c in AssetClass}
        self.committed_by_sector = {}
        self.pending_buy_committed = ZERO
        self.occupied = 0
        self.occupied_by_class = {c: 0 for c in AssetClass}
        for book in self.books.values():
            self._adjust_totals(book, 1)
