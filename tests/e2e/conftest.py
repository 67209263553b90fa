"""Browser tests: run by scripts/e2e-browser.sh (which installs Debian's chromium and sets
GATEWAY_E2E=1), not by the main suite: they need a browser and take longer."""

import os

if not os.environ.get("GATEWAY_E2E"):
    collect_ignore_glob = ["test_*.py"]
