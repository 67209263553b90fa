"""The ``compat`` marker: which client call a test drives through the gateway and what happens.

``@pytest.mark.compat("alpaca-py TradingClient", "submit_order", "works")``, or with an outcome of
"refused" or "not served" and a ``why``. ``scripts/compat-matrix.py`` collects the markers into
``docs/compatibility.md``; a malformed marker fails collection.
"""

from __future__ import annotations

import pytest

OUTCOMES = ("works", "refused", "not served")
MARKER_HELP = (
    "compat(client, call, outcome='works', why=''): the test drives this client call through the "
    "gateway; outcome is works, refused (by design) or not served; refused and not served need a why"
)


def rows_of(item: pytest.Item) -> list[dict]:
    """The compatibility rows a test declares; pytest.UsageError for a malformed marker."""
    rows = []
    for mark in item.iter_markers("compat"):
        args = dict(zip(("client", "call", "outcome", "why"), mark.args)) | mark.kwargs
        client, call = args.get("client"), args.get("call")
        outcome, why = args.get("outcome", "works"), args.get("why", "")
        if not (isinstance(client, str) and client and isinstance(call, str) and call):
            raise pytest.UsageError(f"{item.nodeid}: compat needs a client and a call")
        if outcome not in OUTCOMES:
            raise pytest.UsageError(f"{item.nodeid}: compat outcome {outcome!r} is not one of {OUTCOMES}")
        if outcome != "works" and not why:
            raise pytest.UsageError(f"{item.nodeid}: compat outcome {outcome!r} needs a why")
        test = item.nodeid.split("[")[0]
        rows.append({"client": client, "call": call, "outcome": outcome, "why": why, "test": test})
    return rows
