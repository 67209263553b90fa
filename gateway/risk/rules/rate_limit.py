"""Orders and replaces per bot credential per rolling second, minute and 24 hours.

Counts only what the engine allowed (see ``gateway/risk/activity.py``). Not exempt for exits:
a runaway loop of closing orders is still a runaway loop. Orders without a caller (the
gateway's own) are not rate limited."""

from decimal import Decimal

from ...model import Violation
from .base import Context, num, rule

FIELDS = (
    "account.orders_per_second",
    "account.orders_per_minute",
    "account.orders_per_day",
    "account.replaces_per_second",
    "account.replaces_per_minute",
    "account.replaces_per_day",
)
_WINDOWS = ("second", "minute", "24 hours")


def _limits(rails) -> dict[str, tuple[tuple[int, Decimal, str], ...]]:
    """Per kind, the (limit, as written, window) of every window that is on."""
    out = {}
    for kind, group in (("order", rails[:3]), ("replace", rails[3:])):
        out[kind] = tuple((i, int(r.limit), r.limit, w) for i, (r, w) in enumerate(zip(group, _WINDOWS, strict=True)) if r.active)
    return out


@rule(
    "rate_limit",
    rail=FIELDS,
    exits_exempt=False,
    prepare=_limits,
    active=lambda limits: any(limits.values()),
)
def rate_limit(ctx: Context, limits) -> Violation | None:
    if ctx.caller is None or ctx.activity is None:
        return None
    kind = "replace" if ctx.action == "replace" else "order"
    windows = limits[kind]
    if not windows:
        return None
    counts = ctx.activity.counts(ctx.caller.key_id, kind, ctx.monotonic)
    for i, limit, written, window in windows:
        count = counts[i]
        if count >= limit:
            noun = "replaces" if kind == "replace" else "orders"
            return Violation(
                "rate_limit",
                f"rate_limit: credential {ctx.caller.key_id} already had {count} {noun} accepted in the last "
                f"{window}, limit {num(written)} per {window}",
                limit=written,
                value=Decimal(count + 1),
            )
    return None
