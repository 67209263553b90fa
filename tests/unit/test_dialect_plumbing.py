"""The shared dialect plumbing: exact JSON numbers, handler markers, the error middleware."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.dialects import plumbing
from gateway.errors import InvalidRequest
from gateway.wire.exact_json import dumps


def test_decimals_are_written_with_their_exact_digits():
    text = dumps({"p": Decimal("60000.10"), "tiny": Decimal("1E-12"), "list": [Decimal("-0"), 1, "s", None, True]})
    assert text == b'{"p":60000.10,"tiny":0.000000000001,"list":[0,1,"s",null,true]}'
    assert orjson.loads(text)["p"] == 60000.1
    with pytest.raises(ValueError):
        dumps({"p": Decimal("NaN")})


public = plumbing.marker("_test_public")


@public
async def open_handler(request):
    return plumbing.json_response({"public": plumbing.marked(request, "_test_public")})


async def bad_input(request):
    raise InvalidRequest("qty must be positive")


async def crash(request):
    raise RuntimeError("secret-token-abc")  # an unexpected error whose text must not leak


async def test_the_error_middleware_renders_each_kind_in_the_dialects_shape():
    errors = plumbing.error_middleware(
        "test",
        lambda request, exc: plumbing.json_response({"kind": exc.kind, "message": exc.message}, 422),
        lambda exc: plumbing.json_response({"http": exc.status}, exc.status),
        lambda: plumbing.json_response({"internal": True}, 500),
    )
    app = web.Application(middlewares=[errors])
    app.router.add_get("/open", open_handler)
    app.router.add_get("/bad", bad_input)
    app.router.add_get("/crash", crash)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/open")).json() == {"public": True}
        response = await client.get("/bad")
        assert response.status == 422 and await response.json() == {"kind": "invalid", "message": "qty must be positive"}
        response = await client.get("/nowhere")
        assert response.status == 404 and await response.json() == {"http": 404}
        response = await client.get("/crash")
        assert response.status == 500 and "secret" not in await response.text()
