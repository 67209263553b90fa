"""Finding 1: with `lockdown_on_revoked_key_use` on, only a request that PROVES it holds a
revoked credential (a correct signature or secret) locks the gateway. Anyone on the host can
name a revoked key id; that alone must not stop every bot."""

from __future__ import annotations

import aiohttp

from gateway.home import Home
from gateway.keys.clients import BotCredentials
from gateway.keys.vault import Vault
from gateway.model import TradingState
from tests.integration.support import configure, start_gateway

from .binance import ORDER, now_ms, send, signed


async def test_naming_a_revoked_key_does_not_lock_the_gateway_using_it_does(gateway_home):
    home = Home.at(gateway_home.home)
    configure(home.root, lockdown_on_revoked_key_use=True)
    leaked = BotCredentials(home, Vault.open(home)).issue(label="leaked")
    BotCredentials(home, Vault.open(home)).revoke(leaked.key_id)
    running = await start_gateway(gateway_home, venue="paper")
    control = running.gateway.control
    try:
        async with aiohttp.ClientSession() as session:
            account = f"{running.url}/fapi/v2/account"
            for query in (f"timestamp={now_ms()}&signature=00", signed({}, "a guessed secret")):
                status, body = await send(session, "GET", account, leaked.key_id, query=query)
                assert (status, body["code"]) == (401, -1022)
            async with session.get(f"{running.url}/v2/account", headers={
                "APCA-API-KEY-ID": leaked.key_id, "APCA-API-SECRET-KEY": "a guessed secret"}) as resp:
                assert resp.status == 401
            assert control.state is TradingState.ACTIVE
            status, _ = await send(session, "POST", f"{running.url}/fapi/v1/order", running.key_id, signed(ORDER, running.secret))
            assert status == 200  # other bots trade on

            # The holder of the leaked secret signs correctly: that is a leak, and the gateway locks.
            status, body = await send(session, "GET", account, leaked.key_id, query=signed({}, leaked.secret))
            assert (status, body["code"]) == (401, -2015)
            assert control.state is TradingState.LOCKED
            assert leaked.key_id in control.current.reason
    finally:
        await running.gateway.stop()


async def test_the_alpaca_dialect_locks_only_on_the_revoked_keys_real_secret(gateway_home):
    home = Home.at(gateway_home.home)
    configure(home.root, lockdown_on_revoked_key_use=True)
    leaked = BotCredentials(home, Vault.open(home)).issue(label="leaked")
    BotCredentials(home, Vault.open(home)).revoke(leaked.key_id)
    running = await start_gateway(gateway_home, venue="paper")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running.url}/v2/account", headers={
                    "APCA-API-KEY-ID": leaked.key_id, "APCA-API-SECRET-KEY": leaked.secret}) as resp:
                assert resp.status == 401
        assert running.gateway.control.state is TradingState.LOCKED
    finally:
        await running.gateway.stop()
