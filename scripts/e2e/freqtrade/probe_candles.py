"""Asks the running freqtrade (its REST API, basic auth) for the candles it holds for the pair,
so the check knows freqtrade fetched candles through the gateway, not only that it traded.

usage: probe_candles.py API_URL PASSWORD_ENV_VAR"""

import base64
import json
import os
import sys
import urllib.request

PAIR = "BTC/USDT:USDT"


def main() -> None:
    url, password_env = sys.argv[1:3]
    token = base64.b64encode(f"probe:{os.environ[password_env]}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/api/v1/pair_candles?pair={urllib.parse.quote(PAIR)}&timeframe=1m",
        headers={"Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    count = answer.get("length", 0)
    if count < 10:  # the strategy's startup_candle_count
        print(f"e2e-freqtrade: FAIL: freqtrade holds {count} candles for {PAIR}", file=sys.stderr)
        sys.exit(1)
    print(f"e2e-freqtrade: freqtrade holds {count} 1m candles for {PAIR}")


if __name__ == "__main__":
    main()
