"""Bot credentials: issue, authenticate, rotate, revoke, scopes, abuse blocking."""

from __future__ import annotations

import hmac
import json
import re

import pytest

import gateway.keys.clients as clients_mod
from gateway.errors import Forbidden, Unauthorized
from gateway.home import Home
from gateway.keys.clients import BotCredentials, ClientStoreError, CredentialError
from gateway.keys.master import ENV_VAR, create_master_key
from gateway.keys.vault import Vault
from gateway.model import AssetClass, Caller

T0 = 1_700_000_000.0
IP = "192.0.2.10"


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    monkeypatch.delenv(ENV_VAR, raising=False)
    h = Home.at(tmp_path)
    create_master_key(h)
    Vault.create(h)
    return h


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failures() -> list:
    return []


@pytest.fixture
def creds(home, clock, failures) -> BotCredentials:
    return BotCredentials(
        home, Vault.open(home), clock=clock, on_auth_failure=lambda k, r, why: failures.append((k, r, why))
    )


def other_process(home, clock=None) -> BotCredentials:
    return BotCredentials(home, Vault.open(home), clock=clock or Clock())


def refused(creds, key_id, secret, dialect="alpaca", remote=IP):
    with pytest.raises(Unauthorized) as info:
        creds.authenticate(key_id, secret, dialect, remote)
    assert info.value.message == "invalid credentials"
    return info.value


def test_issue_shape_and_authenticate(home, creds):
    c = creds.issue(label="bot-1")
    assert re.fullmatch(r"GK[A-Z2-7]{18}", c.key_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", c.secret)
    key_id, secret = c  # unpacks
    assert creds.authenticate(key_id, secret, "alpaca", IP) == Caller(key_id=key_id, dialect="alpaca", remote=IP)
    assert creds.scopes_of(key_id) == frozenset({"trade"})
    assert home.clients.stat().st_mode & 0o777 == 0o600
    stored = json.loads(home.clients.read_bytes())["clients"][key_id]
    assert c.secret not in home.clients.read_text()
    assert stored["secret_sha256"] == clients_mod.hashlib.sha256(c.secret.encode()).hexdigest()
    assert creds.vault.get(f"client/{key_id}") == c.secret.encode()


def test_wrong_secret(creds, failures):
    c = creds.issue()
    refused(creds, c.key_id, c.secret[:-1] + ("A" if c.secret[-1] != "A" else "B"))
    assert failures[-1] == (c.key_id, IP, "wrong secret")


def test_unknown_key_same_answer(creds, failures):
    c = creds.issue()
    e1 = refused(creds, "GK" + "A" * 18, c.secret)
    e2 = refused(creds, c.key_id, "x" * 40)
    assert str(e1) == str(e2) == "invalid credentials"
    assert [f[2] for f in failures] == ["unknown key id", "wrong secret"]


def test_revoked_refused_on_next_request(creds, failures):
    c = creds.issue()
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    creds.revoke(c.key_id)
    refused(creds, c.key_id, c.secret)
    assert failures[-1][2] == "credential revoked"
    with pytest.raises(Unauthorized):
        creds.hmac_secret(c.key_id, "binance-futures", IP)
    assert creds.list()[0]["status"] == "revoked"
    # Kept (encrypted) until pruned, so a correctly signed use can still be recognised as a leak.
    assert f"client/{c.key_id}" in creds.vault.names()
    creds.prune()
    assert f"client/{c.key_id}" not in creds.vault.names()


def _signer(secret: str):
    """``signed_with`` for a request signed with ``secret``: true for that key only."""
    return lambda key: key == secret.encode()


def test_only_a_proven_holder_of_a_revoked_key_counts_as_revoked_use(home):
    """Finding 1: naming a revoked key id with a made-up signature is a bad signature, not a use
    of the revoked key; only a correct signature (or secret) is."""
    uses: list[str] = []
    creds = BotCredentials(home, Vault.open(home), on_revoked_use=lambda key_id, remote: uses.append(key_id))
    c = creds.issue()
    creds.revoke(c.key_id)
    with pytest.raises(Unauthorized):
        creds.verify_signed(c.key_id, "binance-futures", IP, _signer("not the secret"))
    with pytest.raises(Unauthorized):
        creds.hmac_secret(c.key_id, "binance-futures", IP)
    refused(creds, c.key_id, "not the secret")
    assert uses == []
    with pytest.raises(Unauthorized):
        creds.verify_signed(c.key_id, "binance-futures", IP, _signer(c.secret))
    refused(creds, c.key_id, c.secret)
    assert uses == [c.key_id, c.key_id]


def test_expired(creds, clock, failures):
    c = creds.issue(expires_in_s=60)
    clock.t = T0 + 59
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    clock.t = T0 + 60
    refused(creds, c.key_id, c.secret)
    assert failures[-1][2] == "credential expired"


def test_rotated_key_works_until_overlap_ends(creds, clock, failures):
    old = creds.issue(label="bot", scopes=("read_only",), dialects=("alpaca",))
    new = creds.rotate(old.key_id, overlap_s=600)
    assert new.key_id != old.key_id and new.secret != old.secret
    assert creds.scopes_of(new.key_id) == frozenset({"read_only"})
    assert creds.describe(new.key_id)["dialects"] == ["alpaca"]
    clock.t = T0 + 599
    creds.authenticate(old.key_id, old.secret, "alpaca", IP)
    creds.authenticate(new.key_id, new.secret, "alpaca", IP)
    clock.t = T0 + 600
    refused(creds, old.key_id, old.secret)
    assert "overlap period has ended" in failures[-1][2]
    creds.authenticate(new.key_id, new.secret, "alpaca", IP)
    with pytest.raises(CredentialError, match="already rotated"):
        creds.rotate(old.key_id)


def test_dialect_scope(creds, failures):
    c = creds.issue(dialects=("alpaca",))
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    refused(creds, c.key_id, c.secret, dialect="binance-futures")
    assert "dialect" in failures[-1][2]
    with pytest.raises(Unauthorized):
        creds.hmac_secret(c.key_id, "binance-futures", IP)


def test_hmac_secret_for_binance(creds):
    c = creds.issue(dialects=("binance-futures",))
    secret, caller = creds.hmac_secret(c.key_id, "binance-futures", IP)
    assert secret == c.secret.encode()
    assert caller == Caller(key_id=c.key_id, dialect="binance-futures", remote=IP)
    with pytest.raises(Unauthorized):
        creds.hmac_secret("GK" + "B" * 18, "binance-futures", IP)


def test_ip_allowlist(creds, failures):
    c = creds.issue(allowed_ips=["10.1.0.0/16", "2001:db8::1"])
    creds.authenticate(c.key_id, c.secret, "alpaca", "10.1.2.3")
    creds.authenticate(c.key_id, c.secret, "alpaca", "::ffff:10.1.2.3")  # v4-mapped v6
    creds.authenticate(c.key_id, c.secret, "alpaca", "2001:db8::1")
    refused(creds, c.key_id, c.secret, remote="10.2.0.1")
    assert "allowlist" in failures[-1][2]
    refused(creds, c.key_id, c.secret, remote=None)
    refused(creds, c.key_id, c.secret, remote="2001:db8::2")


def test_block_after_repeated_failures_silences_failures_but_never_valid_keys(creds, clock, failures):
    c = creds.issue()
    for _ in range(10):
        refused(creds, c.key_id, "wrong")
    assert "blocked" in failures[-1][2]
    assert creds.is_blocked(IP)
    recorded = len(failures)
    # While blocked, further failures are refused without a record each (no audit flood).
    for _ in range(50):
        refused(creds, c.key_id, "wrong")
    assert len(failures) == recorded
    # A valid credential from the blocked address still works: a block on valid keys would let
    # anyone sharing the address lock every bot out.
    assert creds.authenticate(c.key_id, c.secret, "alpaca", IP).key_id == c.key_id
    assert creds.hmac_secret(c.key_id, "binance-futures", IP)[1].key_id == c.key_id
    clock.t = T0 + 300
    assert not creds.is_blocked(IP)
    refused(creds, c.key_id, "wrong")
    assert len(failures) == recorded + 1  # recorded again once the block has ended


def test_failures_outside_window_do_not_block(creds, clock, failures):
    c = creds.issue()
    for _ in range(9):
        refused(creds, c.key_id, "wrong")
    clock.t = T0 + 60  # the first nine leave the 60 s window exactly now
    for _ in range(9):
        refused(creds, c.key_id, "wrong")
    assert not creds.is_blocked(IP)
    assert not any("blocked" in why for _, _, why in failures)
    refused(creds, c.key_id, "wrong")  # the tenth inside one window
    assert creds.is_blocked(IP) and "blocked for 300 s after 10 failures within 60 s" in failures[-1][2]


def test_failures_just_inside_the_window_add_up(creds, clock, failures):
    c = creds.issue()
    for _ in range(9):
        refused(creds, c.key_id, "wrong")
    clock.t = T0 + 59.999
    refused(creds, c.key_id, "wrong")
    assert creds.is_blocked(IP)
    clock.t = T0 + 59.999 + 299.999
    assert creds.is_blocked(IP)
    clock.t = T0 + 59.999 + 300
    assert not creds.is_blocked(IP)


def test_block_is_configurable_and_counts_bad_signatures(home, clock):
    creds = BotCredentials(home, Vault.open(home), clock=clock, max_failures=2, block_s=5)
    c = creds.issue()
    creds.record_failure(c.key_id, IP, "bad signature")
    creds.record_failure(c.key_id, IP, "bad signature")
    assert creds.is_blocked(IP)
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    clock.t = T0 + 5
    assert not creds.is_blocked(IP)


def test_ipv6_blocked_per_64(creds):
    c = creds.issue()
    for i in range(10):
        refused(creds, c.key_id, "wrong", remote=f"2001:db8:1:2::{i + 1:x}")
    assert creds.is_blocked("2001:db8:1:2::ffff")  # the whole /64
    assert not creds.is_blocked("2001:db8:1:3::1")


def test_revocation_by_another_process_seen_on_next_auth(home, creds, clock):
    c = creds.issue()
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    other_process(home).revoke(c.key_id)  # gatewayctl keys revoke
    refused(creds, c.key_id, c.secret)


def test_issue_by_another_process_seen_on_next_auth(home, creds):
    creds.list()  # the gateway has loaded the file already
    c = other_process(home, Clock(T0)).issue(label="from-cli")
    assert creds.authenticate(c.key_id, c.secret, "alpaca", IP).key_id == c.key_id
    assert [d["label"] for d in creds.list()] == ["from-cli"]


def test_list_and_repr_show_no_secret_or_hash(home, creds):
    c = creds.issue(label="bot", asset_classes=[AssetClass.CRYPTO], allowed_ips=["10.0.0.0/8"])
    digest = clients_mod.hashlib.sha256(c.secret.encode()).hexdigest()
    listing = creds.list()
    assert listing[0]["key_id"] == c.key_id and listing[0]["asset_classes"] == ["crypto"]
    assert listing[0]["status"] == "active"
    text = json.dumps(listing) + repr(creds) + repr(c) + str(c) + repr(creds.describe(c.key_id))
    assert c.secret not in text and digest not in text
    assert "hash" not in text and "sha256" not in text
    err = refused(creds, c.key_id, "wrong")
    assert c.secret not in repr(err)


def test_constant_time_compare_used(creds, monkeypatch):
    c = creds.issue()
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    assert any(a == clients_mod._sha256(c.secret) for a, _ in calls)
    calls.clear()
    refused(creds, "GK" + "C" * 18, c.secret)  # unknown keys cost the same compare
    assert calls


def test_read_only_scope(creds):
    ro = creds.issue(scopes=("read_only",))
    rw = creds.issue()
    assert creds.scopes_of(ro.key_id) == frozenset({"read_only"})
    creds.authenticate(ro.key_id, ro.secret, "alpaca", IP)  # may still authenticate (and read)
    with pytest.raises(Forbidden):
        creds.require_scope(ro.key_id, "trade")
    creds.require_scope(rw.key_id, "trade")
    assert creds.scopes_of("GKUNKNOWN") == frozenset()


def test_bad_issue_arguments(creds):
    for kwargs in (
        {"scopes": ("admin",)},
        {"scopes": ("trade", "read_only")},
        {"dialects": ("fix",)},
        {"allowed_ips": ["not-an-ip"]},
        {"expires_in_s": 0},
        {"expires_in_s": float("nan")},
        {"asset_classes": ["stocks"]},
    ):
        with pytest.raises(CredentialError):
            creds.issue(**kwargs)
    assert creds.list() == []


def test_hand_edited_file_fails_closed(home, creds, failures):
    c = creds.issue()
    creds.revoke(c.key_id)
    doc = json.loads(home.clients.read_bytes())
    doc["clients"][c.key_id]["revoked_at"] = None  # try to un-revoke
    home.clients.write_text(json.dumps(doc))
    refused(creds, c.key_id, c.secret)
    assert "integrity" in failures[-1][2]
    with pytest.raises(ClientStoreError):
        creds.issue()
    with pytest.raises(ClientStoreError):
        other_process(home).list()


def test_revoke_and_rotate_unknown(creds):
    with pytest.raises(CredentialError):
        creds.revoke("GKNOPE")
    with pytest.raises(CredentialError):
        creds.rotate("GKNOPE")


def test_prune_drops_dead_secrets(creds, clock):
    a = creds.issue()
    b = creds.issue(expires_in_s=10)
    clock.t = T0 + 11
    assert creds.prune() == 1
    assert f"client/{b.key_id}" not in creds.vault.names()
    assert f"client/{a.key_id}" in creds.vault.names()


def test_change_seen_by_stat_alone(home, creds, monkeypatch):
    """Outside the racy window the reload decision rests on one stat (inode/size/mtime)."""
    monkeypatch.setattr(clients_mod.FileWatch, "RACY_NS", 0)
    c = creds.issue()
    creds.authenticate(c.key_id, c.secret, "alpaca", IP)
    other_process(home).revoke(c.key_id)
    refused(creds, c.key_id, c.secret)


def test_a_pruned_revoked_key_is_refused_once_and_never_counts_as_proven_use(home):
    uses: list[str] = []
    failures: list[str] = []
    creds = BotCredentials(home, Vault.open(home), on_revoked_use=lambda key_id, remote: uses.append(key_id),
                           on_auth_failure=lambda key_id, remote, why: failures.append(why))
    c = creds.issue()
    creds.revoke(c.key_id)
    creds.prune()
    with pytest.raises(Unauthorized):
        creds.verify_signed(c.key_id, "binance-futures", IP, _signer(c.secret))
    assert failures == ["credential revoked (secret pruned)"] and uses == []
# --- the less travelled refusals (each one fails closed) ---------------------------------------


def test_status_through_a_credentials_life(creds, clock):
    active = creds.issue(label="a")
    expiring = creds.issue(label="b", expires_in_s=10)
    rotated = creds.issue(label="c")
    new = creds.rotate(rotated.key_id, overlap_s=5)
    gone = creds.issue(label="d")
    creds.revoke(gone.key_id)
    status = lambda: {d["label"]: d["status"] for d in creds.list() if d["key_id"] != new.key_id}
    assert status() == {"a": "active", "b": "active", "c": "rotating", "d": "revoked"}
    clock.t = T0 + 10
    assert status() == {"a": "active", "b": "expired", "c": "retired", "d": "revoked"}
    assert creds.describe(new.key_id)["rotated_from"] == rotated.key_id
    with pytest.raises(CredentialError, match=r"^no credential 'GKNOPE'$"):
        creds.describe("GKNOPE")
    with pytest.raises(CredentialError, match="is revoked; issue a new one instead"):
        creds.rotate(gone.key_id)


@pytest.mark.parametrize(
    "remote, allowed",
    [
        ("[2001:db8::1]", True),  # bracketed, as some proxies write it
        ("2001:db8::1%eth0", True),  # with a zone id
        ("::ffff:10.1.2.3", True),  # an IPv4 client on a dual-stack socket
        ("10.2.0.1", False),
        ("not an address", False),
        (None, False),
    ],
)
def test_allowlist_understands_the_forms_an_address_arrives_in(creds, failures, remote, allowed):
    c = creds.issue(allowed_ips=["10.1.0.0/16", "2001:db8::1"])
    if allowed:
        assert creds.authenticate(c.key_id, c.secret, "alpaca", remote).key_id == c.key_id
    else:
        refused(creds, c.key_id, c.secret, remote=remote)
        assert "not in the credential's allowlist" in failures[-1][2]


def test_an_untrusted_key_id_reaches_the_audit_hook_printable_and_short(creds, failures):
    refused(creds, "GK\x1b[31m" + "A" * 100, "secret")
    key_id, _, why = failures[-1]
    assert key_id == "GK?[31m" + "A" * 57 and len(key_id) == 64 and why == "unknown key id"
    refused(creds, 12345, "secret")
    assert failures[-1][0] == "" and failures[-1][2] == "missing key id"
    c = creds.issue()
    refused(creds, c.key_id, "")
    assert failures[-1][2] == "missing secret"


def test_a_failing_audit_hook_never_turns_a_refusal_into_an_error(home, clock):
    def broken_hook(*_):
        raise RuntimeError("audit down")

    creds = BotCredentials(home, Vault.open(home), clock=clock, on_auth_failure=broken_hook)
    c = creds.issue()
    refused(creds, c.key_id, "wrong")


def test_unblock_lifts_one_address_or_all(creds, failures):
    c = creds.issue()
    for remote in ("192.0.2.1", "192.0.2.2"):
        for _ in range(10):
            refused(creds, c.key_id, "wrong", remote=remote)
    assert creds.is_blocked("192.0.2.1") and creds.is_blocked("192.0.2.2")
    creds.unblock("192.0.2.1")
    assert not creds.is_blocked("192.0.2.1") and creds.is_blocked("192.0.2.2")
    creds.unblock()
    assert not creds.is_blocked("192.0.2.2")


def test_a_binance_secret_missing_from_the_key_store_is_refused(creds, failures):
    c = creds.issue(dialects=("binance-futures",))
    creds.vault.delete_many([f"client/{c.key_id}"])
    with pytest.raises(Unauthorized):
        creds.hmac_secret(c.key_id, "binance-futures", IP)
    assert failures[-1][2] == "credential secret missing from the key store"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"label": "x" * 201}, "label must be text of at most 200 characters without control characters"),
        ({"label": "bad\nlabel"}, "label must be text of at most 200 characters without control characters"),
        ({"scopes": ()}, "scopes must be one of"),
        ({"dialects": ()}, "dialects must be among"),
        ({"asset_classes": []}, "asset_classes must be None (all) or non-empty"),
        ({"allowed_ips": []}, "allowed_ips must be None (any address) or non-empty"),
        ({"expires_in_s": "soon"}, "expires_in_s must be a number of seconds"),
        ({"expires_in_s": -1}, "expires_in_s must be a finite, positive number of seconds"),
    ],
)
def test_issue_refuses_each_bad_field_with_its_reason(creds, kwargs, message):
    with pytest.raises(CredentialError) as info:
        creds.issue(**kwargs)
    assert str(info.value).startswith(message)
    assert creds.list() == []


def test_single_values_are_accepted_where_lists_are_expected(creds):
    c = creds.issue(scopes="read_only", dialects="alpaca", asset_classes="crypto", allowed_ips="10.0.0.1")
    d = creds.describe(c.key_id)
    assert (d["scopes"], d["dialects"], d["asset_classes"], d["allowed_ips"]) == (
        ["read_only"], ["alpaca"], ["crypto"], ["10.0.0.1/32"]
    )
    assert creds.asset_classes_of(c.key_id) == frozenset({AssetClass.CRYPTO})
    assert creds.asset_classes_of("GKNOPE") == frozenset()
    assert creds.scopes_of("GKNOPE") == frozenset()


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: b"\xff\xfe not text",
        lambda raw: b"[]",
        lambda raw: json.dumps({k: v for k, v in json.loads(raw).items() if k != "mac"}).encode(),
    ],
)
def test_a_credential_file_that_is_not_ours_refuses_every_bot(home, creds, failures, corrupt):
    c = creds.issue()
    home.clients.write_bytes(corrupt(home.clients.read_bytes()))
    refused(creds, c.key_id, c.secret)
    assert failures[-1][2] == "credential store failed its integrity check"
    with pytest.raises(ClientStoreError, match="failed its integrity check"):
        creds.list()
