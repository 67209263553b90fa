#!/usr/bin/env bash
# End-to-end: freqtrade (pinned, futures, isolated margin, dry_run false, exchange "binance")
# trades through the gateway (--venue ccxt) in front of the Binance futures paper broker for
# FREQTRADE_RUN_S seconds (default 180), then the outcome is checked from the audit log and the
# paper broker's orders. Exits non-zero on failure; cleans up after itself.
#   FREQTRADE_VERSION (default 2026.9)   FREQTRADE_RUN_S (default 180)   KEEP_E2E_DIR=1 keeps logs
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
FREQTRADE_VERSION=${FREQTRADE_VERSION:-2026.9}
RUN_S=${FREQTRADE_RUN_S:-180}
SUPPORT=$ROOT/scripts/e2e/freqtrade

# freqtrade in its own environment: its dependencies are not the gateway's.
if [ ! -x .venv-freqtrade/bin/python ]; then
  "$PYTHON" -m venv .venv-freqtrade
fi
installed() { .venv-freqtrade/bin/python -c 'import importlib.metadata as m; print(m.version("freqtrade"))' 2>/dev/null || true; }
if [ "$(installed)" != "$FREQTRADE_VERSION" ]; then
  echo "installing freqtrade $FREQTRADE_VERSION into .venv-freqtrade"
  # uv (from PyPI) resolves and downloads in parallel: ~20 s where pip alone takes ~3 min.
  .venv-freqtrade/bin/python -m pip install -q --disable-pip-version-check uv 2>&1 | grep -v "^WARNING: Location" || true
  if [ -x .venv-freqtrade/bin/uv ]; then
    .venv-freqtrade/bin/uv pip install -q --native-tls --python .venv-freqtrade/bin/python "freqtrade==$FREQTRADE_VERSION"
  else
    .venv-freqtrade/bin/python -m pip install -q --disable-pip-version-check "freqtrade==$FREQTRADE_VERSION" 2>&1 \
      | grep -v "^WARNING: Location" || true
  fi
  [ "$(installed)" = "$FREQTRADE_VERSION" ] || { echo "freqtrade $FREQTRADE_VERSION did not install" >&2; exit 1; }
fi
if [ ! -x .venv/bin/gatewayctl ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
GATEWAYCTL=$ROOT/.venv/bin/gatewayctl

WORK=$(mktemp -d "${TMPDIR:-/tmp}/e2e-freqtrade.XXXXXX")
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    echo "--- e2e-freqtrade failed; last log lines ($WORK) ---" >&2
    for log in freqtrade.log gateway.log broker.log; do
      [ -f "$WORK/$log" ] && { echo "== $log" >&2; tail -n 40 "$WORK/$log" >&2; }
    done
  fi
  if [ "${KEEP_E2E_DIR:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT INT TERM

free_port() { "$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() {  # URL, PID, name: poll /health until it answers or the process dies (deadline 60 s)
  local deadline=$((SECONDS + 60))
  until "$ROOT/.venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' "$1" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { echo "$3 exited before it was ready" >&2; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "$3 not ready within 60 s" >&2; return 1; }
    sleep 0.2
  done
}

BROKER_PORT=$(free_port); GATEWAY_PORT=$(free_port); API_PORT=$(free_port)
BROKER_URL=http://127.0.0.1:$BROKER_PORT
GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT
BROKER_KEY=e2e-broker-key
BROKER_SECRET=$("$ROOT/.venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')

# 1. The futures paper broker, standing in for Binance.
"$GATEWAYCTL" paper-broker --listen "127.0.0.1:$BROKER_PORT" --dialect binance-futures \
  --key-id "$BROKER_KEY" --secret "$BROKER_SECRET" >"$WORK/broker.log" 2>&1 &
PIDS+=($!); wait_healthy "$BROKER_URL" "${PIDS[-1]}" "paper broker"

# 2. A gateway home, the broker key stored in it, and the gateway on --venue ccxt.
(umask 077 && "$GATEWAYCTL" init "$WORK/home" --json >"$WORK/creds.json")
printf '%s' "$BROKER_SECRET" | "$GATEWAYCTL" broker-keys set --home "$WORK/home" --venue ccxt \
  --key-id "$BROKER_KEY" --upstream-url "$BROKER_URL" >/dev/null
"$GATEWAYCTL" serve --home "$WORK/home" --listen "127.0.0.1:$GATEWAY_PORT" --venue ccxt \
  --exchange binanceusdm --upstream-url "$BROKER_URL" >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!; PIDS+=($GATEWAY_PID); wait_healthy "$GATEWAY_URL" "$GATEWAY_PID" "gateway"

# 3. freqtrade's config (the bot's gateway credential, URLs on the gateway) and strategy.
BOT_KEY=$("$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bot_key_id"])' "$WORK/creds.json")
(umask 077 && "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bot_secret"])' "$WORK/creds.json" >"$WORK/bot_secret")
mkdir -p "$WORK/strategies" "$WORK/user_data"
cp "$SUPPORT/GatewayProbe.py" "$WORK/strategies/"
export FREQTRADE_API_PASSWORD
FREQTRADE_API_PASSWORD=$("$ROOT/.venv/bin/python" -c 'import secrets; print(secrets.token_hex(16))')
(umask 077 && .venv-freqtrade/bin/python "$SUPPORT/make_config.py" "$GATEWAY_URL" "$BOT_KEY" "$WORK/bot_secret" \
  "$WORK/trades.sqlite" "$API_PORT" >"$WORK/config.json")

# 4. freqtrade trades for RUN_S seconds.
echo "freqtrade $FREQTRADE_VERSION -> gateway $GATEWAY_URL -> paper broker $BROKER_URL for ${RUN_S}s"
.venv-freqtrade/bin/freqtrade trade --config "$WORK/config.json" --strategy GatewayProbe \
  --strategy-path "$WORK/strategies" --userdir "$WORK/user_data" --logfile "$WORK/freqtrade.log" \
  >"$WORK/freqtrade.out" 2>&1 &
FREQTRADE_PID=$!; PIDS+=($FREQTRADE_PID)
deadline=$((SECONDS + RUN_S))
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$FREQTRADE_PID" 2>/dev/null || { echo "freqtrade exited early" >&2; tail -n 40 "$WORK/freqtrade.out" >&2; exit 1; }
  sleep 1
done
# On a busy machine freqtrade can take a minute just to start: give its first exit up to 90 s more.
closed_trades() { "$ROOT/.venv/bin/python" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM trades WHERE is_open = 0").fetchone()[0])' "$WORK/trades.sqlite" 2>/dev/null || echo 0; }
deadline=$((SECONDS + 90))
while [ "$(closed_trades)" = 0 ] && [ "$SECONDS" -lt "$deadline" ] && kill -0 "$FREQTRADE_PID" 2>/dev/null; do sleep 2; done
"$ROOT/.venv/bin/python" "$SUPPORT/probe_candles.py" "http://127.0.0.1:$API_PORT" FREQTRADE_API_PASSWORD
kill -INT "$FREQTRADE_PID"
for _ in $(seq 1 30); do kill -0 "$FREQTRADE_PID" 2>/dev/null || break; sleep 1; done
kill -KILL "$FREQTRADE_PID" 2>/dev/null || true
# Stop the gateway before reading the log: nothing can reach the broker after the export.
kill -TERM "$GATEWAY_PID"; wait "$GATEWAY_PID" 2>/dev/null || true

# 5. The outcome: audit log, audit chain and the broker's orders.
"$GATEWAYCTL" audit verify --home "$WORK/home" >/dev/null
"$GATEWAYCTL" audit export --home "$WORK/home" --jsonl >"$WORK/audit.jsonl"
BROKER_SECRET="$BROKER_SECRET" "$ROOT/.venv/bin/python" "$SUPPORT/check.py" --audit "$WORK/audit.jsonl" --freqtrade-log "$WORK/freqtrade.log" \
  --broker-url "$BROKER_URL" --broker-key "$BROKER_KEY" --broker-secret-env BROKER_SECRET \
  --trades-db "$WORK/trades.sqlite" --bot-secret-file "$WORK/bot_secret"
