"""Writes the freqtrade config for the end-to-end check: futures, isolated margin, live
(``dry_run: false``), exchange ``binance`` with every ccxt API URL pointed at the gateway.

usage: make_config.py GATEWAY_URL KEY_ID SECRET_FILE DB_PATH API_PORT > config.json
Runs with freqtrade's own Python (it asks that ccxt for the URL names to override)."""

import json
import os
import secrets
import sys
from urllib.parse import urlsplit

import ccxt


def gateway_urls(base: str) -> dict:
    """Every key of ccxt binance's ``urls['api']``, on the gateway, each keeping its path
    (``/fapi/v1``, ``/api/v3``, ...). Websocket entries are left out: freqtrade's websocket
    use is switched off (``enable_ws: false``)."""
    api = ccxt.binance().urls["api"]
    return {name: base + urlsplit(url).path for name, url in api.items()
            if isinstance(url, str) and url.startswith("http")}


def main() -> None:
    base, key_id, secret_file, db_path, api_port = sys.argv[1:6]
    secret = open(secret_file).read().strip()
    urls = {"urls": {"api": gateway_urls(base.rstrip("/"))}}
    config = {
        "trading_mode": "futures",
        "margin_mode": "isolated",
        "dry_run": False,
        "max_open_trades": 1,
        "stake_currency": "USDT",
        "stake_amount": 200,
        "tradable_balance_ratio": 0.99,
        "timeframe": "1m",
        "db_url": f"sqlite:///{db_path}",
        "initial_state": "running",
        "force_entry_enable": True,
        "unfilledtimeout": {"entry": 1, "exit": 1, "unit": "minutes"},
        "entry_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1},
        "exit_pricing": {"price_side": "other", "use_order_book": True, "order_book_top": 1},
        "exchange": {
            "name": "binance",
            "key": key_id,
            "secret": secret,
            "enable_ws": False,
            "ccxt_config": urls,
            "ccxt_async_config": urls,
            "pair_whitelist": ["BTC/USDT:USDT"],
            "pair_blacklist": [],
        },
        "pairlists": [{"method": "StaticPairList"}],
        "api_server": {
            "enabled": True,
            "listen_ip_address": "127.0.0.1",
            "listen_port": int(api_port),
            "username": "probe",
            "password": os.environ["FREQTRADE_API_PASSWORD"],  # probe_candles.py asks it for candles
            "jwt_secret_key": secrets.token_hex(32),
        },
        "bot_name": "gateway-e2e",
        "internals": {"process_throttle_secs": 5, "heartbeat_interval": 60},
    }
    json.dump(config, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
