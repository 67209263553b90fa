"""Every rule, in the order they are evaluated. To add a rule: a file here with one
function decorated with ``@rule``, its rail in ``gateway/policy/schema.py``, its row in
``docs/rules.md``, and its tests."""

from .base import Context, Rule, rule
from .max_exposure_pct import max_exposure_pct
from .max_leverage import max_leverage
from .max_position_pct import max_position_pct
from .trading_state import trading_state

RULES: tuple[Rule, ...] = (
    trading_state,
    max_leverage,
    max_position_pct,
    max_exposure_pct,
)

__all__ = ["RULES", "Context", "Rule", "rule"]
