"""The exact order ledger: what the gateway forwarded, kept true by the venue's events."""

from .ledger import PROTECTIVE_PREFIX, Change, Ledger
from .orders import LedgerOrder, Phase, Role

__all__ = ["PROTECTIVE_PREFIX", "Change", "Ledger", "LedgerOrder", "Phase", "Role"]
