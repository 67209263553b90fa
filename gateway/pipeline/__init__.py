"""The order path and everything around it: admission, market facts, the order path itself,
the reconciler and the resolver of uncertain orders, assembled by ``RiskGateway``."""

from .admission import TRADE_SCOPE
from .gateway import RiskGateway

__all__ = ["TRADE_SCOPE", "RiskGateway"]
