"""Every rule, in the order they are evaluated. To add a rule: a file here with one
function decorated with ``@rule``, its field in ``gateway/policy/schema.py``, its row in
``docs/rules.md``, and its tests.

Order matters only for which violation is reported first: every rule that runs reports.
The gateway's state first, then the per-credential throttles (never exempt for exits),
then what the order is (symbol, signal, prices, stop), then sizing against the book."""

from .asset_class_allocation import asset_class_allocation
from .asset_class_leverage import asset_class_leverage
from .base import Context, Rule, rule
from .duplicate_order import duplicate_order
from .max_exposure_pct import max_exposure_pct
from .max_leverage import max_leverage
from .max_open_positions import max_open_positions
from .max_order_notional import max_order_notional
from .max_order_qty import max_order_qty
from .max_position_pct import max_position_pct
from .max_risk_per_trade_pct import max_risk_per_trade_pct
from .max_sector_pct import max_sector_pct
from .min_cash_buffer_pct import min_cash_buffer_pct
from .naked_option import naked_option
from .option_near_expiry import option_near_expiry
from .price_collar import price_collar
from .rate_limit import rate_limit
from .signal_confidence import signal_confidence
from .stop_loss import stop_loss
from .symbol_allowlist import symbol_allowlist
from .symbol_denylist import symbol_denylist
from .trading_state import trading_state
from .universe_size import universe_size

RULES: tuple[Rule, ...] = (
    trading_state,
    rate_limit,
    duplicate_order,
    symbol_denylist,
    symbol_allowlist,
    signal_confidence,
    price_collar,
    naked_option,
    option_near_expiry,
    stop_loss,
    max_order_qty,
    max_order_notional,
    max_leverage,
    max_position_pct,
    max_exposure_pct,
    asset_class_leverage,
    asset_class_allocation,
    max_sector_pct,
    min_cash_buffer_pct,
    max_risk_per_trade_pct,
    max_open_positions,
    universe_size,
)

__all__ = ["RULES", "Context", "Rule", "rule"]
