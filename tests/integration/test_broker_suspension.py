"""The broker-side kill switch on Alpaca: `gatewayctl lockdown --suspend-at-broker` sets the
account's own ``suspend_trade`` (PATCH /v2/account/configurations), so the broker refuses orders
sent to it directly with the broker key (a bot host holding old keys); `unlock` clears it. Through
the running gateway's operator socket and, with the gateway down, straight from the vault's key.
alpaca-py against the paper-broker process, the CLI as its own process."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from .support import configure, start_gateway, store_broker_key

CLI = [sys.executable, "-m", "gateway.cli"]
ORDER = MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)


def direct(broker) -> TradingClient:
    """A bot host that still holds the broker key and talks to the broker itself."""
    return TradingClient(broker.key_id, broker.secret, paper=True, url_override=broker.url)


async def gatewayctl(*args: str) -> subprocess.CompletedProcess:
    # In a thread: the in-process gateway answers the CLI on this test's event loop.
    return await asyncio.to_thread(subprocess.run, [*CLI, *args], capture_output=True, text=True)


async def status_of(home) -> dict:
    done = await gatewayctl("status", "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)["broker_kill_switch"]["suspend_trade"]


def refused_by_the_broker(client: TradingClient) -> APIError:
    with pytest.raises(APIError) as info:
        client.submit_order(ORDER)
    assert info.value.status_code == 403
    assert info.value.code == 40310000  # Alpaca's error shape, not a bare text
    assert "suspend_trade" in str(info.value)
    return info.value


async def test_lockdown_suspends_at_the_broker_through_the_running_gateway(upstream_gateway, paper_broker_process):
    home = upstream_gateway.init.home
    client = direct(paper_broker_process)
    done = await gatewayctl("lockdown", "--home", str(home), "--reason", "routine")  # without the flag
    assert done.returncode == 0, done.stderr
    assert client.submit_order(ORDER).symbol == "AAPL"  # the broker is not touched
    assert (await status_of(home))["suspended"] is False

    done = await gatewayctl("lockdown", "--home", str(home), "--reason", "keys leaked", "--suspend-at-broker")
    assert done.returncode == 0, done.stderr
    assert "broker suspend_trade set" in done.stdout
    refused_by_the_broker(client)
    assert client.get_account_configurations().suspend_trade is True
    shown = await status_of(home)
    assert shown["suspended"] is True and shown["reason"] == "keys leaked" and shown["upstream"] == paper_broker_process.url
    text = await gatewayctl("status", "--home", str(home))
    assert "broker suspend_trade: SET" in text.stdout

    done = await gatewayctl("unlock", "--home", str(home), "--reason", "keys rotated")
    assert done.returncode == 0, done.stderr
    assert "broker suspend_trade lifted" in done.stdout
    assert client.get_account_configurations().suspend_trade is False
    assert client.submit_order(ORDER).symbol == "AAPL"
    assert (await status_of(home))["suspended"] is False
    assert upstream_gateway.gateway.control.state.value == "ACTIVE"


async def test_gateway_json_makes_suspension_the_default(gateway_home, paper_broker_process):
    configure(gateway_home.home, lockdown_suspend_at_broker=True)
    await paper_broker_process.set_prices({"AAPL": "190"})
    store_broker_key(gateway_home)
    running = await start_gateway(gateway_home, venue="alpaca", upstream_url=paper_broker_process.url)
    try:
        done = await gatewayctl("lockdown", "--home", str(gateway_home.home), "--reason", "default on")
        assert done.returncode == 0, done.stderr
        refused_by_the_broker(direct(paper_broker_process))
        assert (await gatewayctl("unlock", "--home", str(gateway_home.home), "--reason", "ok")).returncode == 0
        assert direct(paper_broker_process).submit_order(ORDER).symbol == "AAPL"
    finally:
        await running.gateway.stop()


async def test_with_the_gateway_down_the_cli_uses_the_vaults_broker_key(gateway_home, paper_broker_process):
    await paper_broker_process.set_prices({"AAPL": "190"})
    store_broker_key(gateway_home)
    home = str(gateway_home.home)
    client = direct(paper_broker_process)
    done = await gatewayctl(
        "lockdown", "--home", home, "--reason", "host lost", "--suspend-at-broker",
        "--upstream-url", paper_broker_process.url,
    )
    assert done.returncode == 0, done.stderr
    assert "gateway not running" in done.stdout and "suspend_trade set" in done.stdout
    refused_by_the_broker(client)
    assert (await status_of(home))["suspended"] is True

    done = await gatewayctl("unlock", "--home", home, "--reason", "recovered")  # lifts where it was set
    assert done.returncode == 0, done.stderr
    assert "suspend_trade lifted" in done.stdout
    assert client.submit_order(ORDER).symbol == "AAPL"


def test_without_a_broker_key_the_cli_says_so(gateway_home, capsys):
    from gateway.cli import main

    home = str(gateway_home.home)
    code = main(["lockdown", "--home", home, "--reason", "x", "--suspend-at-broker", "--upstream-url", "http://127.0.0.1:9"])
    assert code == 3
    assert "no alpaca broker key" in capsys.readouterr().err
    assert main(["status", "--home", home, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["broker_kill_switch"]["suspend_trade"]["suspended"] is False


async def test_unlock_leaves_a_suspension_the_gateway_did_not_set(upstream_gateway, paper_broker_process):
    client = direct(paper_broker_process)
    mine = client.get_account_configurations()
    mine.suspend_trade = True
    client.set_account_configurations(mine)  # the operator's own, set at the broker, not by the gateway
    done = await gatewayctl("unlock", "--home", str(upstream_gateway.init.home), "--reason", "unrelated")
    assert done.returncode == 0, done.stderr
    assert "lifted" not in done.stdout
    refused_by_the_broker(client)


async def test_the_embedded_paper_venue_honours_it_too(gateway_home):
    running = await start_gateway(gateway_home, venue="paper")
    try:
        done = await gatewayctl("lockdown", "--home", str(gateway_home.home), "--reason", "x", "--suspend-at-broker")
        assert done.returncode == 0, done.stderr
        configs = await running.gateway.venue.account_configurations()
        assert configs["suspend_trade"] is True
        assert (await gatewayctl("unlock", "--home", str(gateway_home.home), "--reason", "y")).returncode == 0
        assert (await running.gateway.venue.account_configurations())["suspend_trade"] is False
    finally:
        await running.gateway.stop()
