"""The gateway's trading state: LOCKED refuses every order; REDUCE_ONLY refuses entries."""

from ...model import TradingState, Violation
from .base import Context, rule


@rule("trading_locked", rail=None, exits_exempt=False, codes=("reduce_only",))
def trading_state(ctx: Context, _rail) -> Violation | None:
    if ctx.state is TradingState.LOCKED:
        return Violation("trading_locked", "trading_locked: the gateway is LOCKED; only cancels are accepted")
    if ctx.state is TradingState.REDUCE_ONLY and not ctx.projection.reduces_only:
        return Violation(
            "reduce_only", "reduce_only: the gateway is REDUCE_ONLY; only orders that reduce a position are accepted"
        )
    return None
