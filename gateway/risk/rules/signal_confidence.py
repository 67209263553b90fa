"""When ``min_signal_confidence`` is set, an entry must carry the bot's signal confidence
(``Caller.confidence``) and it must be at least the limit. No confidence: refused."""

from ...model import Violation
from .base import Context, num, rule


@rule("signal_confidence", rail="account.min_signal_confidence")
def signal_confidence(ctx: Context, rail) -> Violation | None:
    confidence = ctx.caller.confidence if ctx.caller is not None else None
    if confidence is None:
        return Violation(
            "signal_confidence",
            f"signal_confidence: the order carries no signal confidence; the policy requires at least {num(rail.limit)}",
            limit=rail.limit,
        )
    if not confidence.is_finite() or confidence < rail.limit:
        return Violation(
            "signal_confidence",
            f"signal_confidence: signal confidence {confidence} is below the minimum {num(rail.limit)}",
            limit=rail.limit,
            value=confidence if confidence.is_finite() else None,
        )
    return None
