"""Options: long calls and puts only. An option sell that does not only reduce a long is
refused (no naked or short options). Closing a long is an exit and never reaches this rule."""

from ...model import Side, Violation
from .base import Context, rule


@rule("naked_option", rail="asset_classes.{asset_class}.long_only")
def naked_option(ctx: Context, _long_only) -> Violation | None:
    if ctx.intent.side is not Side.SELL or ctx.projection.reduces_only:
        return None
    return Violation(
        "naked_option",
        f"naked_option: selling {ctx.intent.symbol} would open or increase a short option position; "
        "the policy allows long calls and puts only",
    )
