"""Venue-side names, re-exported from the core's ports (venues implement them)."""

from ..ports import (  # noqa: F401 - re-exports
    Authenticator,
    Backend,
    DirectBackend,
    EventSink,
    TradingRules,
    Unsubscribe,
    Venue,
    VenueCapabilities,
)
