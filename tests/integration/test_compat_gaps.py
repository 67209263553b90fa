"""alpaca-py TradingClient calls no other test drives, so the compatibility matrix
(docs/compatibility.md) shows each public method as works, refused or not served."""

from __future__ import annotations

import asyncio

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient


@pytest.mark.compat("alpaca-py TradingClient", "get_corporate_announcement_by_id", "not served",
                    why="the venues serve no corporate actions (404 in Alpaca's shape)")
async def test_a_corporate_announcement_by_id_is_not_served_in_alpacas_shape(paper_gateway):
    tc = TradingClient(paper_gateway.key_id, paper_gateway.secret, paper=True, url_override=paper_gateway.url)
    with pytest.raises(APIError) as raised:
        await asyncio.to_thread(tc.get_corporate_announcement_by_id, "d5dbc2a5-8a1c-4c6c-9a6b-0e7a4b1f2c3d")
    assert raised.value.status_code == 404
    assert raised.value.code == 40410000
    assert paper_gateway.secret not in str(raised.value)
