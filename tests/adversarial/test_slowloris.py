"""Finding 3: half-open connections (a request head that never ends) cannot stop the bots. The
gateway closes them after its header timeout, caps how many are open (the oldest idle one makes
room), raises its open-file limit, and keeps the log of such errors short."""

from __future__ import annotations

import asyncio
import resource
import time

import aiohttp
from alpaca.trading.client import TradingClient

from tests.integration.support import start_gateway

from .binance import ORDER, send, signed

HALF_OPEN = b"GET /health HTTP/1.1\r\nHost: x\r\n"  # the blank line that ends the head never comes


async def _hold(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    sockets = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_OPEN)
        sockets.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in sockets))
    return sockets


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:
        return True


async def test_300_half_open_sockets_neither_stop_the_bots_nor_stay_open(gateway_home):
    gw = await start_gateway(gateway_home, venue="paper")
    port = gw.gateway.bound_port
    try:
        sockets = await _hold(port, 300)
        started = time.monotonic()
        trading = TradingClient(gw.key_id, gw.secret, paper=True, url_override=gw.url)
        account = await asyncio.wait_for(asyncio.to_thread(trading.get_account), timeout=2)
        assert account.status is not None
        async with aiohttp.ClientSession() as session:
            status, _ = await asyncio.wait_for(
                send(session, "POST", f"{gw.url}/fapi/v1/order", gw.key_id, signed(ORDER, gw.secret)), timeout=2
            )
            assert status == 200
        assert time.monotonic() - started < 2

        closed = await asyncio.wait_for(asyncio.gather(*(_closed_by_peer(r) for r, _ in sockets)), timeout=40)
        assert all(closed)
        for _, writer in sockets:
            writer.close()
    finally:
        await gw.gateway.stop()


async def test_at_the_connection_cap_the_oldest_idle_connection_makes_room(gateway_home, caplog):
    gw = await start_gateway(gateway_home, venue="paper", max_connections=40)
    try:
        sockets = await _hold(gw.gateway.bound_port, 120)  # three times the cap
        async with aiohttp.ClientSession(headers=gw.headers) as session:
            async with session.get(f"{gw.url}/v2/account") as resp:
                assert resp.status == 200  # a bot still gets in
        # The oldest 80 half-open sockets were closed to make room, well before the header timeout.
        closed = await asyncio.wait_for(asyncio.gather(*(_closed_by_peer(r) for r, _ in sockets[:80])), timeout=2)
        assert all(closed)
        warnings = [r for r in caplog.records if r.name == "gateway.listener" and "cap" in r.getMessage()]
        assert 1 <= len(warnings) <= 5  # rate-limited, not one line per connection
        for _, writer in sockets:
            writer.close()
    finally:
        await gw.gateway.stop()


async def test_the_open_file_limit_is_raised_at_start(gateway_home):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, ceiling), hard))
    gw = await start_gateway(gateway_home, venue="paper")
    try:
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == ceiling
    finally:
        await gw.gateway.stop()


async def _response_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    await reader.readexactly(length)
    return head


async def test_the_deadline_is_for_the_request_head_not_for_an_idle_keep_alive(gateway_home):
    gw = await start_gateway(gateway_home, venue="paper", header_timeout_s=1.0)
    port = gw.gateway.bound_port
    try:
        silent = await asyncio.open_connection("127.0.0.1", port)  # sends nothing at all
        trickle = await asyncio.open_connection("127.0.0.1", port)  # a byte every 0.2 s, never done
        keep_alive = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        keep_alive[1].write(request)
        assert b" 200 " in await _response_head(keep_alive[0])

        started = time.monotonic()
        for byte in HALF_OPEN * 4:
            if trickle[0].at_eof():
                break
            try:
                trickle[1].write(bytes([byte]))
                await trickle[1].drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.2)  # the attacker's pace
        assert await asyncio.wait_for(_closed_by_peer(trickle[0]), timeout=3)
        assert await asyncio.wait_for(_closed_by_peer(silent[0]), timeout=3)
        assert time.monotonic() - started < 4  # the trickle did not extend the deadline

        # The keep-alive connection sat idle longer than the head deadline, and still serves.
        keep_alive[1].write(request)
        assert b" 200 " in await asyncio.wait_for(_response_head(keep_alive[0]), timeout=2)
        for _, writer in (silent, trickle, keep_alive):
            writer.close()
    finally:
        await gw.gateway.stop()
