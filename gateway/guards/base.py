"""The hooks a guard may use. The pipeline calls every guard at each point; all are optional."""

from __future__ import annotations

from ..model import Caller, Decision, Order


class Guard:
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
