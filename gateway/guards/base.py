"""The hooks a guard may use. The pipeline calls every guard at each point; all are optional."""

from __future__ import annotations

from typing import ClassVar

from ..model import Caller, Decision, Order
from .options import Option


class Guard:
    # The gateway.json keys this guard reads (see options.Option); gateway.config collects them.
    OPTIONS: ClassVar[tuple[Option, ...]] = ()

    def seen(self, caller: Caller) -> None:
        """Any authenticated request from this credential."""

    def check(self, caller: Caller) -> None:
        """Before an order is decided; raise a GatewayError to refuse it."""

    def decided(self, caller: Caller, decision: Decision) -> None:
        """After an order's decision is recorded."""

    def accepted(self, caller: Caller, order: Order) -> None:
        """The venue accepted an order for this credential."""

    async def run(self) -> None:
        """A background loop, if the guard needs one; cancelled at shutdown."""
