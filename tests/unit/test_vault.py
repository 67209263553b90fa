"""Key store: encryption round trips, versions, data-key rotation, tamper detection, master key."""

from __future__ import annotations

import base64
import json
import os

import pytest

from gateway.home import Home
from gateway.keys.master import (
    ENV_VAR,
    MasterKeyError,
    create_master_key,
    encode_master_key,
    load_master_key,
    new_master_key,
)
from gateway.keys.vault import SecretNotFound, Vault, VaultError


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    monkeypatch.delenv(ENV_VAR, raising=False)
    h = Home.at(tmp_path / "home")
    h.root.mkdir()
    create_master_key(h)
    return h


@pytest.fixture
def vault(home) -> Vault:
    return Vault.create(home)


def test_round_trip_and_reopen(home, vault):
    assert vault.put("broker/alpaca", b"s3cret-one") == 1
    assert vault.get("broker/alpaca") == b"s3cret-one"
    assert vault.names() == ["broker/alpaca"]
    again = Vault.open(home)
    assert again.get("broker/alpaca") == b"s3cret-one"
    raw = home.keystore.read_bytes()
    assert b"s3cret-one" not in raw and base64.b64encode(b"s3cret-one") not in raw
    assert home.keystore.stat().st_mode & 0o777 == 0o600


def test_versions_latest_and_specific(vault):
    assert vault.put("x", b"one") == 1
    assert vault.put("x", b"two") == 2
    assert vault.get("x") == b"two"
    assert vault.get_version("x", 1) == b"one"
    assert [v["version"] for v in vault.versions("x")] == [1, 2]
    with pytest.raises(SecretNotFound):
        vault.get_version("x", 3)
    with pytest.raises(SecretNotFound):
        vault.get("missing")


def test_delete(home, vault):
    vault.put("a", b"1")
    vault.put("b", b"2")
    vault.delete("a")
    assert vault.names() == ["b"]
    assert Vault.open(home).names() == ["b"]
    with pytest.raises(SecretNotFound):
        vault.delete("a")


def test_fresh_nonce_each_encryption(home, vault):
    vault.put("a", b"same")
    vault.put("a", b"same")
    entries = json.loads(home.keystore.read_bytes())["secrets"]["a"]
    assert entries[0]["nonce"] != entries[1]["nonce"]
    assert entries[0]["ct"] != entries[1]["ct"]


def test_rotate_data_key_keeps_every_secret(home, vault):
    vault.put("a", b"alpha-1")
    vault.put("a", b"alpha-2")
    vault.put("b", b"beta")
    before = json.loads(home.keystore.read_bytes())
    assert vault.rotate_data_key() == 2
    after = json.loads(home.keystore.read_bytes())
    assert list(after["data_keys"]) == ["2"]  # old data key removed
    assert all(e["dk"] == 2 for entries in after["secrets"].values() for e in entries)
    assert after["secrets"]["a"][0]["ct"] != before["secrets"]["a"][0]["ct"]
    for v in (vault, Vault.open(home)):
        assert v.get_version("a", 1) == b"alpha-1"
        assert v.get("a") == b"alpha-2"
        assert v.get("b") == b"beta"
        assert v.data_key_version == 2
    assert vault.put("c", b"gamma") == 1 and Vault.open(home).get("c") == b"gamma"


def test_create_refuses_to_overwrite(home, vault):
    with pytest.raises(VaultError, match="refusing to overwrite"):
        Vault.create(home)
    with pytest.raises(MasterKeyError, match="refusing to overwrite"):
        create_master_key(home)


def test_wrong_master_key(home, vault):
    vault.put("a", b"x")
    other = new_master_key()
    with pytest.raises(VaultError) as info:
        Vault.open(home, master_key=other)
    msg = str(info.value)
    assert "wrong master key or the file was modified" in msg
    assert encode_master_key(other) not in msg
    assert encode_master_key(load_master_key(home)) not in msg


def test_any_changed_byte_is_refused(home, vault):
    vault.put("broker/alpaca", b"k1")
    vault.put("client/GKABC", b"k2")
    raw = home.keystore.read_bytes()
    for i in range(len(raw)):
        for bad in (raw[i] ^ 0x01, raw[i] ^ 0x80):
            home.keystore.write_bytes(raw[:i] + bytes([bad]) + raw[i + 1 :])
            with pytest.raises(VaultError):
                Vault.open(home)
    # A JSON-equivalent change (whitespace) is refused too.
    home.keystore.write_bytes(raw.replace(b"\n  ", b"\n\t", 1))
    with pytest.raises(VaultError):
        Vault.open(home)
    home.keystore.write_bytes(raw)
    assert Vault.open(home).get("client/GKABC") == b"k2"


def _rewrite(home, mutate):
    doc = json.loads(home.keystore.read_bytes())
    mutate(doc)
    home.keystore.write_bytes((json.dumps(doc, sort_keys=True, indent=2) + "\n").encode())


def test_deleted_entry_is_detected(home, vault):
    vault.put("a", b"1")
    vault.put("b", b"2")
    _rewrite(home, lambda d: d["secrets"].pop("a"))
    with pytest.raises(VaultError, match="modified"):
        Vault.open(home)


def test_deleted_version_is_detected(home, vault):
    vault.put("a", b"1")
    vault.put("a", b"2")
    _rewrite(home, lambda d: d["secrets"]["a"].pop())  # roll "a" back to version 1
    with pytest.raises(VaultError):
        Vault.open(home)


def test_swapped_ciphertexts_fail_even_with_a_valid_mac(home, vault):
    """Defence in depth: the AAD binds each ciphertext to its name and version."""
    vault.put("a", b"1")
    vault.put("b", b"2")
    doc = json.loads(home.keystore.read_bytes())
    sa, sb = doc["secrets"]["a"][0], doc["secrets"]["b"][0]
    sa["ct"], sb["ct"], sa["nonce"], sb["nonce"] = sb["ct"], sa["ct"], sb["nonce"], sa["nonce"]
    home.keystore.write_bytes(Vault._serialize(doc, vault._mac_key))  # forge the MAC
    v = Vault.open(home)
    with pytest.raises(VaultError):
        v.get("a")


def test_reload_when_another_process_writes(home, vault):
    vault.put("a", b"1")
    cli = Vault.open(home)  # as gatewayctl would
    cli.put("a", b"2")
    cli.put("b", b"3")
    assert vault.get("a") == b"2"
    assert vault.get("b") == b"3"
    vault.put("c", b"4")  # writes on top of the other's changes, losing nothing
    assert Vault.open(home).names() == ["a", "b", "c"]


def test_tampering_after_open_is_detected_on_next_get(home, vault):
    vault.put("a", b"1")
    _rewrite(home, lambda d: d["secrets"].pop("a"))
    with pytest.raises(VaultError):
        vault.get("a")


def test_master_key_file_is_owner_only(home):
    assert home.master_key.stat().st_mode & 0o777 == 0o600
    assert len(load_master_key(home)) == 32


def test_master_key_file_with_loose_mode_is_refused(home):
    os.chmod(home.master_key, 0o644)
    with pytest.raises(MasterKeyError) as info:
        load_master_key(home)
    assert str(home.master_key) in str(info.value)
    assert "chmod 600" in str(info.value)
    with pytest.raises(MasterKeyError):
        Vault.open(home)


def test_missing_master_key(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    h = Home.at(tmp_path)
    with pytest.raises(MasterKeyError, match=ENV_VAR):
        load_master_key(h)


def test_env_var_master_key(tmp_path, monkeypatch):
    key = new_master_key()
    monkeypatch.setenv(ENV_VAR, encode_master_key(key))
    h = Home.at(tmp_path)  # no master.key file at all
    assert load_master_key(h) == key
    Vault.create(h).put("a", b"1")
    assert not h.master_key.exists()
    assert Vault.open(h).get("a") == b"1"
    monkeypatch.setenv(ENV_VAR, encode_master_key(new_master_key()))
    with pytest.raises(VaultError):
        Vault.open(h)


def test_env_var_master_key_malformed(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, base64.b64encode(b"short").decode())
    with pytest.raises(MasterKeyError, match="32 bytes"):
        load_master_key(Home.at(tmp_path))
    monkeypatch.setenv(ENV_VAR, "not base64!!")
    with pytest.raises(MasterKeyError, match="base64") as info:
        load_master_key(Home.at(tmp_path))
    assert "not base64!!" not in str(info.value)


def test_repr_has_no_key_material(home, vault):
    vault.put("a", b"topsecret")
    text = repr(vault)
    assert "topsecret" not in text and encode_master_key(load_master_key(home)) not in text


def test_bad_names_refused(vault):
    with pytest.raises(ValueError):
        vault.put("a|v1", b"x")
    with pytest.raises(ValueError):
        vault.put("", b"x")


# --- master-key files that must not be trusted ------------------------------------------------


def _replace_master_key(home: Home, make) -> None:
    home.master_key.unlink()
    make(home.master_key)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_master_key_file_of_another_owner_is_refused(home):
    os.chown(home.master_key, 4321, -1)
    with pytest.raises(MasterKeyError) as info:
        load_master_key(home)
    assert str(info.value) == (
        f"{home.master_key} is owned by uid 4321, not by this user (uid {os.getuid()}); "
        "run the gateway as the owner of its home, or chown the file"
    )
    with pytest.raises(MasterKeyError):
        Vault.open(home)


def test_master_key_path_that_is_a_directory_is_refused(home):
    _replace_master_key(home, lambda p: p.mkdir(mode=0o700))
    with pytest.raises(MasterKeyError, match=r"is not a regular file$"):
        load_master_key(home)


def test_master_key_path_that_is_a_symlink_is_refused(home, tmp_path):
    real = tmp_path / "elsewhere.key"
    real.write_bytes(home.master_key.read_bytes())
    real.chmod(0o600)
    _replace_master_key(home, lambda p: p.symlink_to(real))
    with pytest.raises(MasterKeyError, match=r"^cannot open master key file .*: Too many levels of symbolic links$"):
        load_master_key(home)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"A" * 5000, "is too large to be a master key file"),
        ("é".encode() * 10, "is not a base64 text file"),
        (b"not base64 at all!\n", "is not valid base64"),
        (base64.b64encode(b"k" * 31) + b"\n", "decodes to 31 bytes; a master key is exactly 32 bytes"),
    ],
)
def test_master_key_file_with_wrong_content_is_refused_without_quoting_it(home, content, message):
    home.master_key.write_bytes(content)
    home.master_key.chmod(0o600)
    with pytest.raises(MasterKeyError) as info:
        load_master_key(home)
    assert message in str(info.value) and str(home.master_key) in str(info.value)
    assert content.decode("latin-1").strip()[:16] not in str(info.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o610, 0o601])
def test_any_group_or_other_bit_on_the_master_key_is_refused(home, mode):
    home.master_key.chmod(mode)
    with pytest.raises(MasterKeyError, match=f"has mode {mode:o}"):
        load_master_key(home)


# --- key store edges ----------------------------------------------------------------------------


def test_a_missing_or_vanished_key_store_is_refused_by_name(home, vault):
    vault.put("a", b"secret-a")
    home.keystore.unlink()
    with pytest.raises(VaultError, match=rf"^key store {home.keystore} has disappeared$"):
        vault.get("a")
    with pytest.raises(VaultError, match=rf"^no key store at {home.keystore} \(create a home with `gatewayctl init`\)$"):
        Vault.open(home)


def test_a_key_store_path_that_cannot_be_read_is_refused(home, vault):
    home.keystore.unlink()
    home.keystore.mkdir()
    with pytest.raises(VaultError, match=rf"^cannot read key store {home.keystore}: Is a directory$"):
        Vault.open(home)


def test_a_master_key_of_the_wrong_length_is_refused(home, tmp_path):
    other = Home.at(tmp_path / "other")
    other.root.mkdir()
    with pytest.raises(MasterKeyError, match="a master key must be 32 bytes"):
        Vault.create(other, b"short")
    with pytest.raises(MasterKeyError, match="a master key must be 32 bytes"):
        encode_master_key(b"k" * 31)


def test_membership_names_and_secret_types(vault):
    vault.put("a", b"1")
    assert "a" in vault and "b" not in vault and vault.names() == ["a"]
    with pytest.raises(TypeError, match="secret must be bytes"):
        vault.put("b", "text")  # type: ignore[arg-type]
    assert "b" not in vault


def test_subkeys_are_distinct_per_purpose_and_stable(home, vault):
    a, b = vault.subkey("clients.json"), vault.subkey("other")
    assert len(a) == len(b) == 32 and a != b
    assert Vault.open(home).subkey("clients.json") == a
    with pytest.raises(ValueError, match="purpose must be non-empty"):
        vault.subkey("")


def test_open_or_create_makes_one_store_and_then_opens_it(home):
    from gateway.keys.vault import open_or_create

    first = open_or_create(home)
    first.put("x", b"1")
    assert open_or_create(home).get("x") == b"1"
