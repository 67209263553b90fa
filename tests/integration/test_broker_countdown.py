"""The exchange-side kill switch on Binance USD-M: the paper broker serves and honours
``POST /fapi/v1/countdownCancelAll``; the gateway (--venue ccxt) renews it per traded symbol while
serving, so a gateway killed with SIGKILL leaves the exchange to cancel its open orders; lockdown
--cancel-open cancels conditional (algo) orders too. Real ccxt clients over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import aiohttp
import ccxt.async_support as ccxt
import orjson
import pytest
from yarl import URL

from gateway.home import Home
from gateway.keys.broker import BrokerKeys
from gateway.keys.vault import Vault
from gateway.paper_broker import build_binance_paper_broker_app
from gateway.venues.paper import PaperVenue

from .support import configure, free_port, start_gateway
from .test_binance_paper_broker import (
    BROKER_KEY,
    BROKER_SECRET,
    BTC,
    ETH,
    BinanceBroker,
    binance_client,
    broker_process,
    client_of,
    sign,
)

CLI = [sys.executable, "-m", "gateway.cli"]


async def open_ids(client, symbol: str) -> set[str]:
    plain = await client.fetch_open_orders(symbol)
    triggers = await client.fetch_open_orders(symbol, params={"trigger": True})
    return {o["id"] for o in plain} | {o["id"] for o in triggers}


async def poll(check, timeout: float) -> None:
    """Await ``check()`` (async) until it is true, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def broker_stats(broker: BinanceBroker) -> dict:
    async with aiohttp.ClientSession(headers={"X-MBX-APIKEY": broker.key}) as session:
        async with session.get(URL(f"{broker.url}/_paper/stats?{sign({}, broker.secret)}", encoded=True)) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


def beats(stats: dict) -> int:
    return stats["by_route"].get("POST /fapi/v1/countdownCancelAll", 0)


# ---------------------------------------------------------------------------------------
# The paper broker


@pytest.fixture
async def paper(serve_app):
    venue = PaperVenue(starting_equity=Decimal(100000), seed_marks=True, futures=True)
    url = await serve_app(build_binance_paper_broker_app(venue, key_id=BROKER_KEY, secret=BROKER_SECRET))
    return venue, BinanceBroker(url, BROKER_KEY, BROKER_SECRET)


async def test_the_paper_broker_cancels_a_symbols_orders_when_its_countdown_runs_out(paper):
    venue, broker = paper
    async with client_of(broker) as ex:
        resting = await ex.create_order(BTC, "limit", "buy", 0.01, 50000)
        algo = await ex.create_order(BTC, "market", "buy", 0.01, None, {"stopPrice": 70000})  # conditional
        other = await ex.create_order(ETH, "limit", "buy", 0.1, 2000)
        assert await open_ids(ex, BTC) == {resting["id"], algo["id"]}

        answer = await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 400})
        assert answer == {"symbol": "BTCUSDT", "countdownTime": "400"}  # Binance's exact answer
        assert venue.countdowns() == ["BTC/USDT"]

        async def btc_cleared() -> bool:
            return await open_ids(ex, BTC) == set()

        await poll(btc_cleared, timeout=5)
        assert (await ex.fetch_order(algo["id"], BTC, {"trigger": True}))["status"] == "canceled"
        assert await open_ids(ex, ETH) == {other["id"]}  # another symbol's orders are untouched
        assert venue.countdowns() == []


async def test_countdown_zero_stops_it_and_a_renewal_replaces_it(paper):
    venue, broker = paper
    async with client_of(broker) as ex:
        assert (await ex.fapiPrivatePostCountdownCancelAll({"symbol": "ETHUSDT", "countdownTime": 60000}))[
            "countdownTime"
        ] == "60000"
        assert venue.countdowns() == ["ETH/USDT"]
        await ex.fapiPrivatePostCountdownCancelAll({"symbol": "ETHUSDT", "countdownTime": 120000})
        assert venue.countdowns() == ["ETH/USDT"]  # renewed: still one timer
        stopped = await ex.fapiPrivatePostCountdownCancelAll({"symbol": "ETHUSDT", "countdownTime": 0})
        assert stopped == {"symbol": "ETHUSDT", "countdownTime": "0"}
        assert venue.countdowns() == []


@pytest.mark.parametrize(
    "params, exception, code",
    [
        ({"countdownTime": 1000}, ccxt.BadRequest, -1102),  # no symbol
        ({"symbol": "BTCUSDT"}, ccxt.BadRequest, -1102),  # no countdownTime
        ({"symbol": "BTCUSDT", "countdownTime": "-5"}, ccxt.BadRequest, -1130),
        ({"symbol": "BTCUSDT", "countdownTime": "1.5"}, ccxt.BadRequest, -1130),
        ({"symbol": "BTCUSDT", "countdownTime": "99999999999999"}, ccxt.BadRequest, -1130),
        ({"symbol": "NOPEUSDT", "countdownTime": 1000}, ccxt.BadSymbol, -1121),
    ],
)
async def test_countdown_errors_are_binances(paper, params, exception, code):
    venue, broker = paper
    async with client_of(broker) as ex:
        with pytest.raises(exception) as info:
            await ex.fapiPrivatePostCountdownCancelAll(params)
        assert f'"code":{code}' in str(info.value).replace(" ", "")
    assert venue.countdowns() == []


# ---------------------------------------------------------------------------------------
# The gateway renews it while serving; SIGKILL leaves the exchange to cancel


def serve_process(home, upstream: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--listen", f"127.0.0.1:{port}", "--venue", "ccxt", "--upstream-url", upstream],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if "gateway ready" in line:
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"gateway did not start: {line}{process.stdout.read().decode()[-2000:]}")


async def test_the_heartbeat_runs_while_serving_and_sigkill_leaves_the_exchange_to_cancel(gateway_home):
    countdown_s = 2
    configure(gateway_home.home, broker_countdown_s=countdown_s)
    with broker_process() as broker:
        BrokerKeys(Vault.open(Home.at(gateway_home.home))).set("ccxt", broker.key, broker.secret)
        port = free_port()
        gateway = serve_process(gateway_home.home, broker.url, port)
        try:
            bot = binance_client(f"http://127.0.0.1:{port}", gateway_home.bot_key_id, gateway_home.bot_secret)
            try:
                await bot.load_markets()
                resting = await bot.create_order(BTC, "limit", "buy", 0.01, 50000)
            finally:
                await bot.close()
            async with client_of(broker) as direct:
                assert await open_ids(direct, BTC) == {resting["id"]}
                armed = beats(await broker_stats(broker))

                # Beats keep coming (every countdown/4) and the order outlives several countdowns.
                async def renewed_past_two_countdowns() -> bool:
                    return beats(await broker_stats(broker)) >= armed + 6  # 3 s of beats, > one countdown

                await poll(renewed_past_two_countdowns, timeout=countdown_s * 4)
                assert await open_ids(direct, BTC) == {resting["id"]}

                status = subprocess.run(
                    [*CLI, "status", "--home", str(gateway_home.home), "--json"], capture_output=True, text=True
                )
                assert status.returncode == 0, status.stderr
                countdown = orjson.loads(status.stdout)["broker_kill_switch"]["countdown"]
                assert countdown["countdown_s"] == countdown_s and countdown["interval_s"] == countdown_s / 4
                assert countdown["symbols"]["BTC/USDT"]["last_beat"] and countdown["symbols"]["BTC/USDT"]["error"] is None

                killed_at = time.monotonic()
                os.kill(gateway.pid, signal.SIGKILL)
                gateway.wait()

                async def canceled_by_the_exchange() -> bool:
                    return await open_ids(direct, BTC) == set()

                await poll(canceled_by_the_exchange, timeout=countdown_s + 5)
                assert time.monotonic() - killed_at < countdown_s + 5
                assert (await direct.fetch_order(resting["id"], BTC))["status"] == "canceled"
        finally:
            gateway.kill()
            gateway.wait()


def test_the_heartbeat_can_be_turned_off_and_refuses_typos(gateway_home):
    from gateway.config import ConfigError, parse_config
    from gateway.server import Gateway, ServeOptions

    with pytest.raises(ConfigError, match="broker_countdown_s"):
        parse_config(orjson.dumps({"gateway_id": "g", "broker_countdown_s": 0}))
    with pytest.raises(ConfigError, match="did you mean 'broker_countdown_s'"):
        parse_config(orjson.dumps({"gateway_id": "g", "broker_countdown": 30}))
    BrokerKeys(Vault.open(Home.at(gateway_home.home))).set("ccxt", BROKER_KEY, BROKER_SECRET)
    options = ServeOptions(venue="ccxt", upstream_url="http://127.0.0.1:9")
    built = Gateway(Home.at(gateway_home.home), options)._build_broker_countdown()  # nothing started
    assert built is not None and built.countdown_s == 120  # on by default
    configure(gateway_home.home, broker_countdown_s="off")
    assert Gateway(Home.at(gateway_home.home), options)._build_broker_countdown() is None
    paper = Gateway(Home.at(gateway_home.home), ServeOptions(venue="paper"))
    configure(gateway_home.home, broker_countdown_s=30)
    assert paper._build_broker_countdown() is None  # no exchange countdown to renew


# ---------------------------------------------------------------------------------------
# lockdown --cancel-open reaches conditional orders; bots cannot touch the countdown


async def test_lockdown_cancel_open_cancels_algo_orders_on_the_ccxt_venue(gateway_home):
    with broker_process() as broker:
        BrokerKeys(Vault.open(Home.at(gateway_home.home))).set("ccxt", broker.key, broker.secret)
        running = await start_gateway(gateway_home, venue="ccxt", upstream_url=broker.url)
        bot = binance_client(running.url, gateway_home.bot_key_id, gateway_home.bot_secret)
        try:
            await bot.load_markets()
            # A bot cannot stop or stretch the gateway's countdown: refused, nothing reaches the exchange.
            with pytest.raises(ccxt.ExchangeError) as info:
                await bot.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 0})
            assert "kept by the gateway" in str(info.value)
            assert beats(await broker_stats(broker)) == 0

            await bot.create_order(BTC, "market", "buy", 0.01)
            stop = await bot.create_order(BTC, "market", "sell", 0.01, None, {"stopLossPrice": 55000, "reduceOnly": True})
            entry_stop = await bot.create_order(ETH, "market", "buy", 0.1, None, {"stopPrice": 4000})
            resting = await bot.create_order(ETH, "limit", "buy", 0.1, 2000)
            async with client_of(broker) as direct:
                assert stop["id"] in await open_ids(direct, BTC)
                assert await open_ids(direct, ETH) == {entry_stop["id"], resting["id"]}

                lockdown = await asyncio.to_thread(
                    subprocess.run,
                    [*CLI, "lockdown", "--home", str(gateway_home.home), "--reason", "drill", "--cancel-open"],
                    capture_output=True,
                    text=True,
                )
                assert lockdown.returncode == 0, lockdown.stderr
                assert "orders canceled" in lockdown.stdout
                assert await open_ids(direct, BTC) == set() and await open_ids(direct, ETH) == set()
                for order_id, symbol in ((stop["id"], BTC), (entry_stop["id"], ETH)):
                    assert (await direct.fetch_order(order_id, symbol, {"trigger": True}))["status"] == "canceled"
                assert (await direct.fetch_positions())[0]["contracts"] == 0.01  # the position stays
        finally:
            await bot.close()
            await running.gateway.stop()
