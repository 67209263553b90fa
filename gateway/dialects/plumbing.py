"""Plumbing every dialect shares, written once: JSON responses (with exact Decimal numbers where
a wire format carries numbers), handler markers (public endpoints, order routes), and the error
middleware shape (a dialect supplies only how it renders a gateway error and an HTTP error).

New route modules use these; ``alpaca.py`` and ``binance_futures.py`` still carry their own
copies of the same patterns and can move onto ``error_middleware`` as they are split.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..errors import GatewayError, PayloadTooLarge
from ..wire.exact_json import dumps

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def exact_json_response(data: Any, status: int = 200) -> web.Response:
    """JSON whose Decimals are written as numbers with their exact digits (market data, and a
    broker's own answers passed on)."""
    return web.Response(body=dumps(data), status=status, content_type="application/json")


def marker(name: str) -> Callable[[Handler], Handler]:
    """A decorator that marks a handler (``public``, ``order_route``...); ``marked`` reads it."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, name, True)
        return handler

    return mark


def marked(request: web.Request, name: str) -> bool:
    return bool(getattr(request.match_info.handler, name, False))


def error_middleware(
    label: str,
    render_gateway_error: Callable[[web.Request, GatewayError], web.Response],
    render_http_error: Callable[[web.HTTPException], web.Response],
    render_internal: Callable[[], web.Response],
):
    """The one error shape every dialect needs: gateway errors and HTTP errors rendered in the
    dialect's format, anything unexpected a generic 500 whose text never carries the exception's
    message (it could hold a secret)."""
    log = logging.getLogger(f"gateway.dialects.{label}")

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            log.info("%s %s %s -> %s", label, request.method, request.path, exc.kind)
            response = render_gateway_error(request, exc)
            if isinstance(exc, PayloadTooLarge):
                response.force_close()  # the unread rest of the body must not be parsed as a request
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return render_http_error(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            log.error("%s %s %s -> internal error (%s)", label, request.method, request.path, type(exc).__name__)
            return render_internal()

    return errors
