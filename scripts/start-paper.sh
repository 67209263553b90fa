#!/usr/bin/env bash
# Sets up a virtual environment (if needed), creates a gateway home on first run, and starts
# the gateway on its embedded paper broker. Prints the base URL and the bot credential.
#   GATEWAY_HOME (default ./gateway-home)   LISTEN (default 127.0.0.1:8700)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
HOME_DIR=${GATEWAY_HOME:-gateway-home}
LISTEN=${LISTEN:-127.0.0.1:8700}
CREDS="$HOME_DIR.credentials.json"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
if [ ! -e "$HOME_DIR/gateway.json" ]; then
  (umask 077 && .venv/bin/gatewayctl init "$HOME_DIR" --json > "$CREDS")
  echo "created gateway home $HOME_DIR; bot credential saved to $CREDS (owner-only)"
fi
if [ -r "$CREDS" ]; then
  .venv/bin/python - "$CREDS" "$LISTEN" <<'PY'
import json, sys
creds = json.load(open(sys.argv[1]))
print(f"base URL:    http://{sys.argv[2]}")
print(f"bot key id:  {creds['bot_key_id']}")
print(f"bot secret:  {creds['bot_secret']}")
PY
fi
# Prices move along a seeded path every second, so a bot sees markets move and orders fill.
exec .venv/bin/gatewayctl serve --home "$HOME_DIR" --listen "$LISTEN" --venue paper --paper-walk 1
