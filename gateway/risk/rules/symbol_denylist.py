"""Symbols that may not be entered. An option is denied when its underlying is."""

from ...model import Violation
from .base import Context, rule, underlying


@rule("symbol_denied", rail="account.symbol_denylist", prepare=lambda symbols: frozenset(symbols or ()), active=bool)
def symbol_denylist(ctx: Context, denied: frozenset[str]) -> Violation | None:
    symbol = ctx.intent.symbol
    hit = symbol if symbol in denied else underlying(symbol)
    if hit is None or hit not in denied:
        return None
    shown = symbol if hit == symbol else f"{symbol} (underlying {hit})"
    return Violation("symbol_denied", f"symbol_denied: {shown} is on the policy's symbol_denylist")
