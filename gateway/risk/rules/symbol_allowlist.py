"""Only listed symbols may be entered (an option is allowed when its underlying is listed).
``off`` allows any symbol; an empty list allows none."""

from ...model import Violation
from .base import Context, rule, underlying


@rule(
    "symbol_not_allowed",
    rail="account.symbol_allowlist",
    prepare=lambda symbols: None if symbols is None else frozenset(symbols),
    active=lambda allowed: allowed is not None,
)
def symbol_allowlist(ctx: Context, allowed: frozenset[str]) -> Violation | None:
    symbol = ctx.intent.symbol
    if symbol in allowed:
        return None
    root = underlying(symbol)
    if root is not None and root in allowed:
        return None
    return Violation("symbol_not_allowed", f"symbol_not_allowed: {symbol} is not on the policy's symbol_allowlist")
