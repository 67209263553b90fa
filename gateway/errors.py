"""Errors the core and venues raise; each dialect renders them in its own wire format.

Messages are shown to bots verbatim, so they must never contain a secret: build them from
field names, limits and values only.
"""

from __future__ import annotations

from .model import Decision


class GatewayError(Exception):
    """Base class. ``kind`` is what a dialect maps to a status and error code."""

    kind = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(GatewayError):
    """The request cannot be understood or violates the wire contract (Alpaca 422)."""

    kind = "invalid"


class PayloadTooLarge(GatewayError):
    kind = "too_large"


class Unauthorized(GatewayError):
    """Missing, unknown, expired or revoked credential (401). Never says which."""

    kind = "unauthorized"


class Forbidden(GatewayError):
    """Authenticated, but this credential may not do this (scope, read-only) (403)."""

    kind = "forbidden"


class NotFound(GatewayError):
    kind = "not_found"


class InsufficientFunds(GatewayError):
    """The venue itself refused for lack of buying power or balance (403)."""

    kind = "insufficient_funds"


class OrderRejected(GatewayError):
    """The venue refused the order for a reason other than funds (422)."""

    kind = "order_rejected"


class RiskRejected(GatewayError):
    """The gateway's policy refused the order; carries the full decision."""

    kind = "risk_rejected"

    def __init__(self, decision: Decision):
        self.decision = decision
        parts = [v.message for v in decision.violations]
        super().__init__(
            "; ".join(parts) + f" (policy v{decision.policy_version})"
            if parts
            else f"rejected by policy v{decision.policy_version}"
        )

    @property
    def codes(self) -> tuple[str, ...]:
        return self.decision.codes


class TradingHalted(GatewayError):
    """Trading state forbids this (LOCKED, or REDUCE_ONLY for an entry) (403)."""

    kind = "halted"

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class RateLimited(GatewayError):
    """Too many requests (429). ``retry_after_s``, when known, becomes a Retry-After header."""

    kind = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamUnavailable(GatewayError):
    """The venue could not be reached or answered garbage (503, never 504)."""

    kind = "upstream_unavailable"


class UpstreamUncertain(GatewayError):
    """The order may or may not have reached the venue. Rendered as 502, never 504, so clients
    do not blindly re-POST; the client order id makes a deliberate retry safe."""

    kind = "upstream_uncertain"
