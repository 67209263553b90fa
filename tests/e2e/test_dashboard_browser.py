"""The dashboard in headless Chromium (Playwright, Debian's chromium), against `gatewayctl serve`
(Alpaca venue) and `gatewayctl paper-broker`, each its own process, with alpaca-py as the bot.

Scenario: without the token nothing leaks; login; the state reads ACTIVE; an order sent by
alpaca-py shows in the decision feed within 2 s without a reload; a refused order shows its
code; Lock down with a reason -> the page and `gatewayctl status` say LOCKED and the next bot
order is refused; Unlock restores ACTIVE; a forged POST without the CSRF token is refused.
Screenshots go to docs/ (linked from the README)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from playwright.sync_api import expect, sync_playwright

from gateway.venues.paper_engine import DEFAULT_MARKS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
BROKER_KEY, BROKER_SECRET = "PKE2EBROKER000000001", "e2e-broker-secret-not-a-real-one"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gatewayctl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], input=stdin, capture_output=True, text=True,
                          check=check, timeout=60)


def wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{url} did not come up: {process.stderr.read()[-3000:] if process.stderr else ''}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack():
    tmp = Path(tempfile.mkdtemp(prefix="gwe2e", dir="/tmp"))  # short: the operator socket path has a length limit
    home = tmp / "home"
    init = json.loads(gatewayctl("init", str(home), "--json").stdout)
    broker_port, bot_port, op_port = free_port(), free_port(), free_port()
    procs = []
    broker = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "paper-broker", "--listen", f"127.0.0.1:{broker_port}",
         "--key-id", BROKER_KEY, "--secret", BROKER_SECRET],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    procs.append(broker)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", broker_port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and broker.poll() is None, "paper broker did not start"
                time.sleep(0.05)
        marks = {symbol: str(price) for symbol, price in DEFAULT_MARKS.items()}
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{broker_port}/_paper/prices", data=json.dumps(marks).encode(), method="POST",
            headers={"APCA-API-KEY-ID": BROKER_KEY, "APCA-API-SECRET-KEY": BROKER_SECRET, "Content-Type": "application/json"},
        ), timeout=5).close()
        gatewayctl("broker-keys", "set", "--home", str(home), "--venue", "alpaca", "--key-id", BROKER_KEY,
                   "--upstream-url", f"http://127.0.0.1:{broker_port}", stdin=BROKER_SECRET + "\n")
        serve = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--home", str(home), "--venue", "alpaca",
             "--upstream-url", f"http://127.0.0.1:{broker_port}", "--listen", f"127.0.0.1:{bot_port}",
             "--operator-listen", f"127.0.0.1:{op_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        procs.append(serve)
        wait_http(f"http://127.0.0.1:{bot_port}/health", serve)
        yield {
            "home": str(home), "bot": f"http://127.0.0.1:{bot_port}", "dashboard": f"http://127.0.0.1:{op_port}/dashboard",
            "key_id": init["bot_key_id"], "secret": init["bot_secret"],
            "token": (home / "operator.token").read_text().strip(),
        }
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def order(stack, symbol: str, qty: float):
    client = TradingClient(stack["key_id"], stack["secret"], paper=True, url_override=stack["bot"])
    return client.submit_order(MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY))


def status(stack) -> str:
    return json.loads(gatewayctl("status", "--home", stack["home"], "--json").stdout)["state"]["state"]


def test_the_operator_dashboard_in_a_browser(stack, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()

    # Without the token: a login form, nothing about the account; the API answers 401.
    page.goto(stack["dashboard"])
    expect(page.locator('input[name="token"]')).to_be_visible()
    assert stack["key_id"] not in page.content()
    assert page.locator('[data-testid="state"]').count() == 0
    api = page.request.get(stack["dashboard"] + "/api/overview")
    assert api.status == 401 and stack["key_id"] not in api.text()

    page.fill('input[name="token"]', "wrong-token")
    page.click('button[type="submit"]')
    expect(page.locator(".error")).to_contain_text("Wrong token")

    # Login.
    page.fill('input[name="token"]', stack["token"])
    page.click('button[type="submit"]')
    state = page.locator('[data-testid="state"]')
    expect(state).to_have_text("ACTIVE", timeout=5000)
    cookie = next(c for c in context.cookies() if c["name"] == "gw_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > time.time()
    page.wait_for_selector("body[data-ready='1']")

    # An order sent by alpaca-py shows in the feed within 2 s, without a reload.
    accepted = order(stack, "AAPL", 1)
    feed = page.locator('[data-testid="decisions"] tbody')
    expect(feed.locator("tr").first).to_contain_text("AAPL", timeout=2000)
    expect(feed.locator("tr").first).to_contain_text("allow", timeout=2000)
    assert accepted.symbol == "AAPL"

    # A refused order shows its code.
    with pytest.raises(APIError):
        order(stack, "MSFT", 100_000)
    expect(feed.locator("tr.deny").first).to_contain_text("max_", timeout=2000)
    expect(page.locator('[data-testid="limits"]')).to_contain_text("account.max_exposure_pct")
    page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

    # Lock down with a reason, then confirm.
    page.fill('input[name="reason"]', "e2e: operator stops trading")
    page.click("#lockdown")
    page.click('[data-testid="confirm-lockdown"]')
    expect(state).to_have_text("LOCKED", timeout=3000)
    assert status(stack) == "LOCKED"
    with pytest.raises(APIError):
        order(stack, "AAPL", 1)
    expect(feed.locator("tr.deny").first).to_contain_text("trading_locked", timeout=2000)
    page.screenshot(path=str(DOCS / "dashboard-locked.png"), full_page=False)

    # A forged POST without the CSRF token is refused (the session cookie alone is not enough).
    forged = page.request.post(stack["dashboard"] + "/api/unlock", data={"reason": "forged"})
    assert forged.status == 403
    assert status(stack) == "LOCKED"

    # Unlock restores ACTIVE.
    page.fill('input[name="unlock_reason"]', "e2e: all clear")
    page.click("#unlock")
    expect(state).to_have_text("ACTIVE", timeout=3000)
    assert status(stack) == "ACTIVE"
    order(stack, "AAPL", 1)

    # The audit log verifies from the page; filtering the feed by a code keeps only those refusals.
    page.click("#verify")
    expect(page.locator('[data-testid="verify-result"]')).to_contain_text("intact", timeout=5000)
    page.select_option("#filter-code", "trading_locked")
    expect(feed.locator("tr")).to_have_count(1, timeout=2000)
    expect(feed.locator("tr").first).to_contain_text("trading_locked")
    context.close()
