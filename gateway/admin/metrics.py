"""Prometheus metrics for one gateway: decisions by result and code, order latency, exposure
against each limit, trading state. A registry per gateway (not the global one), so several
gateways in one process (tests) never share counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ..model import Decision, TradingState

if TYPE_CHECKING:
    from ..server import Gateway

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "gateway_decisions", "Order decisions by result and reason code", ["result", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_order_seconds",
            "Time from an order reaching the pipeline to the venue's answer",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._gateway: Gateway | None = None

    def attach(self, gateway: "Gateway") -> None:
        """Add the gauges read from the live gateway at scrape time."""
        self._gateway = gateway
        self.registry.register(_LiveGauges(gateway))

    def on_decision(self, decision: Decision, seconds: float) -> None:
        if decision.allowed:
            self.decisions.labels("allow", "").inc()
        else:
            for code in decision.codes:
                self.decisions.labels("deny", code).inc()
        self.latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveGauges:
    def __init__(self, gateway: "Gateway"):
        self.gateway = gateway

    def describe(self):
        return []

    def collect(self):
        from .api import status_snapshot

        snapshot = status_snapshot(self.gateway)
        state = GaugeMetricFamily("gateway_trading_state", "1 for the current trading state", labels=["state"])
        for s in TradingState:
            state.add_metric([s.value], 1.0 if snapshot["state"]["state"] == s.value else 0.0)
        yield state
        value = GaugeMetricFamily("gateway_limit_value", "Current projected value of each limit", labels=["limit"])
        limit = GaugeMetricFamily("gateway_limit", "The active policy's limit", labels=["limit"])
        for name, row in snapshot["exposure"].items():
            if row["value"] is not None:
                value.add_metric([name], float(row["value"]))
            if row["limit"] != "off":
                limit.add_metric([name], float(row["limit"]))
        yield value
        yield limit
        yield GaugeMetricFamily("gateway_policy_version", "Active policy version", value=snapshot["policy"]["version"])
        yield GaugeMetricFamily("gateway_audit_seq", "Last audit record sequence number", value=snapshot["audit"]["seq"])
        budget = snapshot["upstream_budget"]
        yield GaugeMetricFamily(
            "gateway_upstream_requests_last_minute", "Request weight sent to the broker in the last minute",
            value=budget["used_last_min"],
        )
        if budget["limit_per_min"] is not None:
            yield GaugeMetricFamily(
                "gateway_upstream_limit_per_minute", "The broker account's request limit", value=budget["limit_per_min"]
            )
        yield GaugeMetricFamily(
            "gateway_upstream_refused_reads", "Bot reads refused to keep room for orders", value=budget["refused_reads"]
        )
