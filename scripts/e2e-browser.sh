#!/usr/bin/env bash
# The dashboard's browser test: headless Chromium (Debian's package; Playwright's own browser
# download is not reachable) driven by Playwright for Python. Installs chromium with apt-get when
# missing and the `e2e` extra into .venv, then runs tests/e2e/. Screenshots land in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,e2e]'
export GATEWAY_E2E=1 CHROMIUM=/usr/bin/chromium
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/e2e "$@"
