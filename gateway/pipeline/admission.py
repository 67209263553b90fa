"""Admission: which checks each operation runs, in one table.

Before anything is decided, a request must come from a credential that may do it: the
credential's scopes (read-only credentials never trade), its asset classes, and the guards'
verdicts (a suspended credential sends nothing). Every operation names its checks here, so no
path can skip one by accident (a close is an order like any other).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import Forbidden
from ..guards.base import Guard
from ..model import AssetClass, Caller

TRADE_SCOPE = "trade"

SEEN = "seen"  # tell the guards the credential is alive (dead man's switch)
TRADE = "trade"  # the credential has the trade scope
ASSET_CLASS = "asset_class"  # the credential may trade this asset class
ALL_CLASSES = "all_classes"  # the operation touches every asset class: only unrestricted credentials
GUARDS = "guards"  # no guard holds the credential (rejection-burst suspension, ...)

CHECKS: dict[str, tuple[str, ...]] = {
    "submit": (SEEN, TRADE, ASSET_CLASS, GUARDS),
    "replace": (SEEN, TRADE, ASSET_CLASS, GUARDS),
    "close": (SEEN, TRADE, ASSET_CLASS, GUARDS),
    "close_all": (SEEN, TRADE, ALL_CLASSES),
    "cancel": (SEEN, TRADE),
    "cancel_all": (SEEN, TRADE),
    "leverage": (SEEN, TRADE, ASSET_CLASS),
    "margin_mode": (SEEN, TRADE, ASSET_CLASS),
    "read": (SEEN,),
}


class Admission:
    def __init__(
        self,
        *,
        scopes: Callable[[str], frozenset[str]],
        asset_classes: Callable[[str], frozenset[AssetClass] | None],
        guards: Sequence[Guard] = (),
    ):
        self.scopes = scopes
        self.asset_classes = asset_classes
        self.guards = tuple(guards)

    def admit(self, caller: Caller, operation: str, asset_class: AssetClass | None = None) -> None:
        """Raise unless ``caller`` may perform ``operation`` (on ``asset_class``)."""
        for check in CHECKS[operation]:
            if check == SEEN:
                for guard in self.guards:
                    guard.seen(caller)
            elif check == TRADE:
                if TRADE_SCOPE not in self.scopes(caller.key_id):
                    raise Forbidden("this credential is read-only")
            elif check == ASSET_CLASS:
                allowed = self.asset_classes(caller.key_id)
                if asset_class is not None and allowed is not None and asset_class not in allowed:
                    raise Forbidden(f"this credential may not trade {asset_class.value}")
            elif check == ALL_CLASSES:
                allowed = self.asset_classes(caller.key_id)
                if allowed is not None and set(allowed) != set(AssetClass):
                    raise Forbidden("this credential is limited to some asset classes and may not act on all of them")
            elif check == GUARDS:
                for guard in self.guards:
                    guard.check(caller)
