"""The ccxt venue (a package: venue, errors, markets, codec, orders, market data, user stream)."""

from .venue import CcxtVenue

__all__ = ["CcxtVenue"]
