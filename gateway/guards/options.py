"""How a safeguard declares the ``gateway.json`` keys it reads (mitmproxy's addon options): a name,
a type pydantic validates, a default and one line of help. ``gateway.config`` builds the one
typed config model from these declarations, so a key no part declares is refused at start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    type: Any
    default: Any
    help: str
