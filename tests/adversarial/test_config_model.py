"""Finding 13: gateway.json is a typed model. A mistyped key or a bad value refuses the start with
a message naming it, instead of silently leaving a safeguard off; each safeguard declares the
options it reads."""

from __future__ import annotations

import pytest

from gateway.config import known_keys
from gateway.guards import SAFEGUARDS
from gateway.home import Home
from gateway.server import Gateway, ServeOptions, StartupError
from tests.integration.support import configure


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"rejection_burts": {"count": 3}}, "unknown key 'rejection_burts' (did you mean 'rejection_burst'?)"),
        ({"dead_man_switch": 30}, "unknown key 'dead_man_switch' (did you mean 'dead_man_switch_s'?)"),
        ({"rejection_burst": {"count": 3, "windows": 60}}, "unknown key 'rejection_burst.windows'"),
        ({"rejection_burst": {"count": "3"}}, "rejection_burst.count"),
        ({"rejection_burst": {"count": 0}}, "rejection_burst.count"),
        ({"dead_man_switch_s": -1}, "dead_man_switch_s"),
        ({"webhook_url": "file:///etc/passwd"}, "webhook_url"),
        ({"lockdown_on_revoked_key_use": "yes"}, "lockdown_on_revoked_key_use"),
    ],
)
def test_a_bad_gateway_json_refuses_the_start_naming_the_key(gateway_home, settings, words):
    configure(gateway_home.home, **settings)
    with pytest.raises(StartupError) as info:
        Gateway(Home.at(gateway_home.home), ServeOptions(port=0))
    assert words in str(info.value) and "gateway.json" in str(info.value)


def test_each_safeguard_declares_its_options_and_they_are_the_known_keys(gateway_home):
    declared = {option.name for part in SAFEGUARDS for option in part.OPTIONS}
    assert {"rejection_burst", "dead_man_switch_s", "webhook_url"} <= declared
    assert declared <= set(known_keys())
    configure(gateway_home.home, rejection_burst={"count": 4, "window_s": 30}, dead_man_switch_s=5, lockdown_on_revoked_key_use=True)
    gateway = Gateway(Home.at(gateway_home.home), ServeOptions(port=0))
    assert (gateway.rejection_burst.count, gateway.rejection_burst.window_s) == (4, 30.0)
    assert [type(g).__name__ for g in gateway.pipeline.guards] == ["RejectionBurst", "DeadMansSwitch"]
    assert gateway.config.lockdown_on_revoked_key_use is True
