"""Upstream broker keys inside the vault."""

from __future__ import annotations

import pytest

from gateway.home import Home
from gateway.keys.broker import BrokerKeyError, BrokerKeyMissing, BrokerKeys
from gateway.keys.master import ENV_VAR, create_master_key
from gateway.keys.vault import Vault

KEY_ID = "PKTESTKEYABCD1234"
SECRET = "very-secret-broker-value-0123456789"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    monkeypatch.delenv(ENV_VAR, raising=False)
    h = Home.at(tmp_path)
    create_master_key(h)
    Vault.create(h)
    return h


@pytest.fixture
def keys(home) -> BrokerKeys:
    return BrokerKeys(Vault.open(home))


def test_set_and_get(home, keys):
    assert keys.set("alpaca", KEY_ID, SECRET) == 1
    assert keys.get("alpaca") == (KEY_ID, SECRET)
    assert BrokerKeys(Vault.open(home)).get("alpaca") == (KEY_ID, SECRET)
    assert SECRET.encode() not in home.keystore.read_bytes()


def test_get_missing_and_unknown_venue(keys):
    with pytest.raises(BrokerKeyMissing, match="broker-keys set"):
        keys.get("ccxt")
    with pytest.raises(BrokerKeyError, match="unknown venue"):
        keys.set("kraken", KEY_ID, SECRET)


def test_rotate_swaps_and_keeps_previous(home, keys):
    keys.set("ccxt", KEY_ID, SECRET)
    assert keys.rotate("ccxt", "NEWKEY99990000", "new-secret-value") == 2
    assert keys.get("ccxt") == ("NEWKEY99990000", "new-secret-value")
    d = keys.describe("ccxt")
    assert d["version"] == 2 and d["previous_versions"] == [1] and d["action"] == "rotate"
    assert [h["key_id"] for h in keys.history("ccxt")] == ["****1234", "****0000"]
    assert keys.rollback("ccxt") == 3
    assert keys.get("ccxt") == (KEY_ID, SECRET)


def test_rotate_requires_an_existing_key(keys):
    with pytest.raises(BrokerKeyMissing, match="use set"):
        keys.rotate("alpaca", KEY_ID, SECRET)


def test_rotation_seen_by_running_gateway(home, keys):
    keys.set("alpaca", KEY_ID, SECRET)
    assert keys.get("alpaca")[0] == KEY_ID
    BrokerKeys(Vault.open(home)).rotate("alpaca", "OTHERKEY55556666", "s2")  # the CLI
    assert keys.get("alpaca") == ("OTHERKEY55556666", "s2")


def test_describe_masks_and_never_shows_secret(keys):
    assert keys.describe("alpaca") == {"venue": "alpaca", "configured": False}
    keys.set("alpaca", KEY_ID, SECRET)
    d = keys.describe("alpaca")
    assert d["key_id"] == "****1234"
    assert d["version"] == 1 and d["set_at"] and d["configured"] is True
    text = repr(d) + repr(keys.history("alpaca")) + repr(keys)
    assert SECRET not in text and KEY_ID not in text


def test_whitespace_and_empty_values_refused(keys):
    with pytest.raises(BrokerKeyError, match="whitespace") as info:
        keys.set("alpaca", KEY_ID, SECRET + "\n")
    assert SECRET not in str(info.value)
    with pytest.raises(BrokerKeyError):
        keys.set("alpaca", "", SECRET)
