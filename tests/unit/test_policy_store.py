"""Installing signed policies: every refusal path keeps the last good policy, byte for byte."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.home import Home
from gateway.policy.signing import (
    dump_sig_doc,
    generate_keypair,
    key_id_of,
    load_public_key,
    read_sig_file,
    sig_path_for,
    sign_file,
    verify_signatures,
)
from gateway.policy.store import ActivePolicy, PolicyRefused, PolicyStore
from gateway.policy.trust import Trust, TrustError, rotate_trust

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
GATEWAY_ID = "gw-test-1"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def policy_text(*, version: int, gateway_id: str = GATEWAY_ID, expires: str = "2030-01-01T00:00:00Z", **rails: str) -> str:
    text = DEFAULT_POLICY.read_text()
    text = re.sub(r"^version: .*$", f"version: {version}", text, flags=re.M)
    text = re.sub(r"^gateway_id: .*$", f'gateway_id: "{gateway_id}"', text, flags=re.M)
    text = re.sub(r"^expires: .*$", f"expires: {expires}", text, flags=re.M)
    for name, value in rails.items():
        text, n = re.subn(rf"^(\s+{name}:)[^#\n]*", rf"\1 {value}   ", text, flags=re.M)
        assert n == 1, name
    return text


class Env:
    def __init__(self, root: Path, signers: tuple[str, ...] = ("alice", "bob"), **trust_args):
        self.root = root
        self.home = Home.at(root / "home")
        self.home.root.mkdir(parents=True)
        self.home.config.write_text(json.dumps({"gateway_id": GATEWAY_ID}))
        self.keys: dict[str, Path] = {}
        for name in ("alice", "bob", "carol", "dave"):
            folder = self.home.signing_dir if name in signers else root / "elsewhere"
            self.keys[name] = folder / f"{name}.key"
            generate_keypair(self.keys[name])
        Trust.create(self.home.trust, {n: self.keys[n].with_suffix(".pub") for n in signers}, **trust_args)
        self.store = PolicyStore(self.home, now=lambda: NOW)
        self.count = 0

    def kid(self, name: str) -> str:
        return key_id_of(load_public_key(self.keys[name].with_suffix(".pub")))

    def write(self, text: str, *signers: str) -> Path:
        self.count += 1
        path = self.root / "candidates" / f"p{self.count}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        for name in signers:
            sign_file(path, self.keys[name])
        return path

    def policy(self, *signers: str, **fields) -> Path:
        return self.write(policy_text(**fields), *signers)

    def install_v1(self, *signers: str) -> ActivePolicy:
        path = self.policy(*(signers or ("alice",)), version=1)
        return self.store.install_initial(path.read_bytes(), read_sig_file(path))

    def snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.home.root)): p.read_bytes()
            for p in sorted(self.home.root.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }

    def refused(self, path: Path, code: str) -> str:
        """Apply ``path``, expect refusal ``code``, and prove nothing changed."""
        before_files = self.snapshot()
        before = self.store.active
        with pytest.raises(PolicyRefused) as info:
            self.store.apply(path)
        assert info.value.code == code, info.value.message
        assert self.snapshot() == before_files
        assert self.store.active == before
        reloaded = PolicyStore(self.home, now=lambda: NOW).load_active()
        assert (reloaded.version, reloaded.sha256) == (before.version, before.sha256)
        # a refusal is also what check_file reports, without raising
        verdict = self.store.check_file(path)
        assert (verdict.ok, verdict.code) == (False, code)
        return info.value.message


@pytest.fixture
def env(tmp_path: Path) -> Env:
    env = Env(tmp_path)
    env.install_v1()
    return env


# --- the happy paths --------------------------------------------------------------------------


def test_round_trip_keygen_sign_verify_apply(tmp_path: Path):
    home = Home.at(tmp_path / "home")
    home.root.mkdir()
    home.config.write_text(json.dumps({"gateway_id": GATEWAY_ID}))
    key_path = home.signing_dir / "operator.key"
    key_id = generate_keypair(key_path)
    trust = Trust.create(home.trust, [key_path.with_suffix(".pub")])
    assert list(trust.keys) == [key_id]

    first = tmp_path / "v1.yaml"
    first.write_text(policy_text(version=1))
    sign_file(first, key_path)
    assert verify_signatures(first.read_bytes(), read_sig_file(first), Trust.load(home.trust)) == {key_id}
    store = PolicyStore(home, now=lambda: NOW)
    installed = store.install_initial(first.read_bytes(), read_sig_file(first))
    assert (installed.version, installed.signers) == (1, frozenset({key_id}))
    assert home.active_policy.read_bytes() == first.read_bytes()
    assert read_sig_file(home.active_policy) == read_sig_file(first)
    assert (home.policy_history / "v1.yaml").read_bytes() == first.read_bytes()

    second = tmp_path / "v2.yaml"
    second.write_text(policy_text(version=2, max_position_pct="1"))
    sign_file(second, key_path)
    verdict = store.check_file(second)
    assert verdict.ok and [c.direction for c in verdict.changes if c.name.startswith("account.")] == ["tighten"]
    applied = store.apply(second)
    assert applied.version == 2 and store.active == applied
    assert home.active_policy.read_bytes() == second.read_bytes()
    assert (home.policy_history / "v2.yaml.sig").exists()

    loaded = PolicyStore(home, now=lambda: NOW).load_active()
    assert (loaded.version, loaded.sha256, loaded.signers) == (2, applied.sha256, frozenset({key_id}))
    assert str(loaded.policy.account.max_position_pct.limit) == "1"
    assert loaded.loaded_at == NOW
    with pytest.raises(AttributeError):
        loaded.policy = None  # frozen


def test_tightening_signed_once_applies(env: Env):
    applied = env.store.apply(env.policy("bob", version=2, max_exposure_pct="10"))
    assert applied.version == 2 and applied.signers == {env.kid("bob")}


def test_unchanged_limits_with_a_new_version_apply(env: Env):
    assert env.store.apply(env.policy("alice", version=2)).version == 2


def test_loosening_needs_two_distinct_trusted_signers(env: Env):
    env.store.apply(env.policy("alice", version=2, max_position_pct="1"))
    loose = env.policy("alice", version=3, max_position_pct="2")
    message = env.refused(loose, "needs_second_signer")
    assert "account.max_position_pct: 1 → 2" in message
    assert "needs 2 distinct trusted signers" in message

    sign_file(loose, env.keys["bob"])  # extends the .sig
    applied = env.store.apply(loose)
    assert applied.version == 3 and applied.signers == {env.kid("alice"), env.kid("bob")}


def test_reject_to_clamp_is_a_loosening(env: Env):
    message = env.refused(
        env.policy("alice", version=2, max_position_pct="{limit: 2, on_violation: clamp}"), "needs_second_signer"
    )
    assert "account.max_position_pct" in message and "(clamp)" in message


def test_the_same_key_twice_counts_once(env: Env):
    env.store.apply(env.policy("alice", version=2, max_position_pct="1"))
    loose = env.policy("alice", version=3, max_position_pct="2")
    sign_file(loose, env.keys["alice"])
    doc = read_sig_file(loose)
    assert len(doc["signatures"]) == 1
    doc["signatures"].append(dict(doc["signatures"][0]))  # duplicated by hand
    sig_path_for(loose).write_bytes(dump_sig_doc(doc))
    assert "has 1" in env.refused(loose, "needs_second_signer")


def test_an_untrusted_co_signer_does_not_count(env: Env):
    env.store.apply(env.policy("alice", version=2, max_position_pct="1"))
    message = env.refused(env.policy("alice", "carol", version=3, max_position_pct="2"), "needs_second_signer")
    assert env.kid("carol") in message and "do not count" in message


def test_an_expired_active_policy_can_be_replaced(env: Env):
    later = PolicyStore(env.home, now=lambda: datetime(2031, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(PolicyRefused) as info:
        later.load_active()
    assert info.value.code == "expired"
    applied = later.apply(env.policy("alice", version=2, expires="2032-01-01T00:00:00Z", max_position_pct="1"))
    assert applied.version == 2


# --- one test per refusal ---------------------------------------------------------------------


def test_unsigned_no_sig_file(env: Env):
    message = env.refused(env.policy(version=2, max_position_pct="1"), "unsigned")
    assert "not signed" in message


def test_unsigned_empty_signature_list(env: Env):
    path = env.policy(version=2, max_position_pct="1")
    sig_path_for(path).write_text(json.dumps({"sha256": "0" * 64, "signatures": []}))
    env.refused(path, "unsigned")


def test_unsigned_garbage_sig_file(env: Env):
    path = env.policy(version=2, max_position_pct="1")
    sig_path_for(path).write_text("{not json")
    env.refused(path, "unsigned")


def test_a_changed_byte_after_signing(env: Env):
    path = env.policy("alice", "bob", version=2, max_position_pct="1")
    data = bytearray(path.read_bytes())
    data[data.index(b"max_position_pct: 1") + len("max_position_pct: ")] = ord("2")  # 1 -> 2
    path.write_bytes(bytes(data))
    message = env.refused(path, "bytes_changed")
    assert "the policy's bytes do not match its signature file" in message


def test_an_unknown_key(env: Env):
    message = env.refused(env.policy("carol", version=2, max_position_pct="1"), "unknown_signer")
    assert env.kid("carol") in message


def test_a_bad_signature_from_a_trusted_key(env: Env):
    path = env.policy("alice", "bob", version=2, max_position_pct="1")
    doc = read_sig_file(path)
    doc["signatures"][1]["sig"] = base64.b64encode(b"\x01" * 64).decode()
    sig_path_for(path).write_bytes(dump_sig_doc(doc))
    message = env.refused(path, "unknown_signer")
    assert "do not verify" in message and env.kid("bob") in message


def test_insufficient_signers_below_threshold(tmp_path: Path):
    env = Env(tmp_path, threshold=2, loosen_threshold=2)
    env.install_v1("alice", "bob")
    message = env.refused(env.policy("alice", version=2, max_position_pct="1"), "insufficient_signers")
    assert "needs 2 distinct trusted signers" in message
    assert env.store.apply(env.policy("alice", "bob", version=2, max_position_pct="1")).version == 2


def test_install_initial_needs_threshold(tmp_path: Path):
    env = Env(tmp_path, threshold=2, loosen_threshold=2)
    path = env.policy("alice", version=1)
    with pytest.raises(PolicyRefused) as info:
        env.store.install_initial(path.read_bytes(), read_sig_file(path))
    assert info.value.code == "insufficient_signers"
    assert not env.home.active_policy.exists()


def test_install_initial_refuses_when_a_policy_is_installed(env: Env):
    path = env.policy("alice", version=5)
    with pytest.raises(FileExistsError):
        env.store.install_initial(path.read_bytes(), read_sig_file(path))


@pytest.mark.parametrize(
    "rails, fragment",
    [
        ({"max_leverage": "11"}, "account.max_leverage = 11 is above the gateway's hard ceiling of 10"),
        ({"max_position_pct": "off"}, "account.max_position_pct is a hard rail"),
        ({"max_exposure_pct": "-1"}, "account.max_exposure_pct"),
    ],
)
def test_invalid_policy_names_the_field(env: Env, rails, fragment):
    message = env.refused(env.policy("alice", "bob", version=2, **rails), "invalid_policy")
    assert fragment in message


def test_invalid_policy_missing_rail(env: Env):
    text = re.sub(r"^\s+max_leverage:.*\n", "", policy_text(version=2), flags=re.M)
    message = env.refused(env.write(text, "alice", "bob"), "invalid_policy")
    assert "account.max_leverage: not set" in message


def test_wrong_gateway(env: Env):
    message = env.refused(env.policy("alice", version=2, gateway_id="gw-other", max_position_pct="1"), "wrong_gateway")
    assert "gw-other" in message and GATEWAY_ID in message


def test_wildcard_gateway_is_not_accepted(env: Env):
    message = env.refused(env.policy("alice", version=2, gateway_id="*", max_position_pct="1"), "wrong_gateway")
    assert f'set gateway_id: "{GATEWAY_ID}"' in message


def test_expired(env: Env):
    message = env.refused(env.policy("alice", version=2, expires="2026-05-31T23:59:59Z", max_position_pct="1"), "expired")
    assert "expired at 2026-05-31T23:59:59Z" in message


def test_rollback_equal_version(env: Env):
    message = env.refused(env.policy("alice", version=1, max_position_pct="1"), "rollback")
    assert "not newer than the active policy v1" in message


def test_rollback_lower_version(env: Env):
    env.store.apply(env.policy("alice", version=5, max_position_pct="1"))
    message = env.refused(env.policy("alice", "bob", version=4, max_position_pct="0.5"), "rollback")
    assert "v4 is not newer than the active policy v5" in message


def test_reapplying_an_old_signed_policy_is_a_rollback(env: Env):
    env.store.apply(env.policy("alice", version=2, max_position_pct="1"))
    old = env.home.root.parent / "old.yaml"
    old.write_bytes((env.home.policy_history / "v1.yaml").read_bytes())
    sig_path_for(old).write_bytes((env.home.policy_history / "v1.yaml.sig").read_bytes())
    env.refused(old, "rollback")


def test_checks_run_in_the_documented_order(env: Env):
    # unsigned beats everything
    env.refused(env.policy(version=1, gateway_id="x", expires="2000-01-01T00:00:00Z"), "unsigned")
    # unknown signer beats an invalid, wrong, expired rollback
    env.refused(env.policy("carol", version=1, max_leverage="99", gateway_id="x"), "unknown_signer")
    # invalid beats wrong gateway
    env.refused(env.policy("alice", version=1, max_leverage="99", gateway_id="x"), "invalid_policy")
    # wrong gateway beats expiry
    env.refused(env.policy("alice", version=1, gateway_id="x", expires="2000-01-01T00:00:00Z"), "wrong_gateway")
    # expiry beats rollback
    env.refused(env.policy("alice", version=1, expires="2000-01-01T00:00:00Z"), "expired")
    # rollback beats loosening
    env.refused(env.policy("alice", version=1, max_position_pct="{limit: 2, on_violation: clamp}"), "rollback")
    env.refused(env.policy("alice", version=2, max_position_pct="{limit: 2, on_violation: clamp}"), "needs_second_signer")


def test_check_candidate_is_pure(env: Env):
    path = env.policy("alice", version=2, max_position_pct="1")
    before = env.snapshot()
    verdict = env.store.check_candidate(path.read_bytes(), read_sig_file(path), env.store.active)
    assert verdict.ok and verdict.policy.version == 2 and verdict.code is None
    assert env.snapshot() == before
    refused = env.store.check_candidate(path.read_bytes(), None, env.store.active)
    assert (refused.ok, refused.code) == (False, "unsigned")
    with pytest.raises(PolicyRefused):
        refused.raise_if_refused()


# --- one signer: four eyes --------------------------------------------------------------------


def test_single_key_gateway_can_tighten_but_never_loosen(tmp_path: Path):
    env = Env(tmp_path, signers=("alice",))
    env.install_v1()
    assert env.store.apply(env.policy("alice", version=2, max_position_pct="1")).version == 2
    message = env.refused(env.policy("alice", version=3, max_position_pct="2"), "needs_second_signer")
    assert "trusts only 1 key" in message and "add a second signer" in message and "four-eyes" in message


# --- the installed policy at start-up ---------------------------------------------------------


def test_load_active_refuses_a_tampered_policy(env: Env):
    env.home.active_policy.write_text(env.home.active_policy.read_text().replace("max_leverage: 10", "max_leverage: 9 "))
    with pytest.raises(PolicyRefused) as info:
        PolicyStore(env.home, now=lambda: NOW).load_active()
    assert info.value.code == "bytes_changed"
    assert str(env.home.active_policy) in info.value.message


def test_load_active_refuses_expired_wrong_gateway_and_missing(env: Env, tmp_path: Path):
    with pytest.raises(PolicyRefused) as info:
        PolicyStore(env.home, now=lambda: datetime(2030, 1, 1, tzinfo=timezone.utc)).load_active()
    assert info.value.code == "expired"

    env.home.config.write_text(json.dumps({"gateway_id": "someone-else"}))
    with pytest.raises(PolicyRefused) as info:
        PolicyStore(env.home, now=lambda: NOW).load_active()
    assert info.value.code == "wrong_gateway"

    env.home.config.unlink()
    with pytest.raises(PolicyRefused) as info:
        PolicyStore(env.home, now=lambda: NOW).load_active()
    assert info.value.code == "wrong_gateway" and "gateway.json" in info.value.message

    empty = Env(tmp_path / "empty")
    with pytest.raises(PolicyRefused) as info:
        empty.store.load_active()
    assert info.value.code == "no_policy"


def test_load_active_refuses_a_policy_whose_signer_is_no_longer_trusted(env: Env):
    Trust.create(env.home.trust, {"bob": env.keys["bob"].with_suffix(".pub")}, overwrite=True)
    with pytest.raises(PolicyRefused) as info:
        PolicyStore(env.home, now=lambda: NOW).load_active()
    assert info.value.code == "unknown_signer"


def test_reload_keeps_the_last_good_policy(env: Env):
    good = env.store.load_active()
    env.home.active_policy.write_bytes(env.home.active_policy.read_bytes() + b"\n# tampered\n")
    with pytest.raises(PolicyRefused):
        env.store.reload()
    assert env.store.active is good


def test_a_crash_between_the_two_renames_still_loads(env: Env):
    v1_bytes = env.home.active_policy.read_bytes()
    env.store.apply(env.policy("alice", version=2, max_position_pct="1"))
    # as if the crash hit after active.yaml.sig (v2) was written but before active.yaml (still v1)
    env.home.active_policy.write_bytes(v1_bytes)
    loaded = PolicyStore(env.home, now=lambda: NOW).load_active()
    assert loaded.version == 1


def test_messages_never_contain_private_key_material(env: Env):
    private = {name: path.read_text() for name, path in env.keys.items()}
    messages = [
        env.refused(env.policy("carol", version=2, max_position_pct="1"), "unknown_signer"),
        env.refused(env.policy("alice", version=2, max_position_pct="3"), "invalid_policy"),
    ]
    for message in messages:
        for pem in private.values():
            for line in pem.splitlines()[1:-1]:
                assert line not in message


# --- trust rotation ---------------------------------------------------------------------------


def _write_trust(env: Env, trust: Trust, *signers: str, kind: str = "trust") -> Path:
    path = env.root / f"trust-v{trust.version}.json"
    path.write_bytes(trust.to_bytes())
    for name in signers:
        sign_file(path, env.keys[name], kind=kind)
    return path


@pytest.fixture
def solo(tmp_path: Path) -> Env:
    env = Env(tmp_path, signers=("alice",))
    env.install_v1()
    return env


def _trust_unchanged(env: Env, before: dict[str, bytes], code: str, path: Path) -> str:
    with pytest.raises(TrustError) as info:
        rotate_trust(env.home, path)
    assert info.value.code == code, info.value.message
    assert env.snapshot() == before
    return info.value.message


def test_rotation_adds_a_second_signer_and_then_loosening_works(solo: Env):
    current = Trust.load(solo.home.trust)
    new = current.successor(add={"bob": solo.keys["bob"].with_suffix(".pub")})
    path = _write_trust(solo, new, "alice", "bob")
    # One key holder alone cannot add a second key (it would let them loosen alone): an operator
    # on the host confirms the new signer by its id.
    message = _trust_unchanged(solo, solo.snapshot(), "needs_host_confirmation", path)
    assert solo.kid("bob") in message
    installed = rotate_trust(solo.home, path, confirmed_key_ids=[solo.kid("bob")])
    assert installed == new and Trust.load(solo.home.trust).version == 2
    assert (solo.home.policy_history / "trust-v1.json").exists()
    assert read_sig_file(solo.home.trust) == read_sig_file(path)

    solo.store.apply(solo.policy("alice", version=2, max_position_pct="1"))
    loose = solo.policy("alice", version=3, max_position_pct="2")
    solo.refused(loose, "needs_second_signer")
    sign_file(loose, solo.keys["bob"])
    assert solo.store.apply(loose).version == 3


def test_rotation_refused_without_current_signers(solo: Env):
    new = Trust.load(solo.home.trust).successor(add={"bob": solo.keys["bob"].with_suffix(".pub")})
    message = _trust_unchanged(solo, solo.snapshot(), "not_enough_signers", _write_trust(solo, new, "bob"))
    assert "CURRENT trust" in message


def test_rotation_refused_without_new_key_holders(solo: Env):
    # bob's key replaces alice's, but only alice signed: bob never proved he holds the key
    new = Trust.load(solo.home.trust).successor(
        add={"bob": solo.keys["bob"].with_suffix(".pub")}, remove=[solo.kid("alice")]
    )
    message = _trust_unchanged(solo, solo.snapshot(), "not_enough_signers", _write_trust(solo, new, "alice"))
    assert "OWN keys" in message


def test_rotation_refused_when_not_newer(solo: Env):
    same = Trust.build({"alice": solo.keys["alice"].with_suffix(".pub")}, version=1)
    message = _trust_unchanged(solo, solo.snapshot(), "trust_rollback", _write_trust(solo, same, "alice"))
    assert "must increase the version" in message


def test_rotation_refused_when_unsigned_changed_or_signed_as_a_policy(solo: Env):
    new = Trust.load(solo.home.trust).successor(add={"bob": solo.keys["bob"].with_suffix(".pub")})
    before = solo.snapshot()
    _trust_unchanged(solo, before, "unsigned", _write_trust(solo, new))
    path = _write_trust(solo, new, "alice", "bob")
    path.write_bytes(path.read_bytes().replace(b'"threshold": 1', b'"threshold": 2'))
    _trust_unchanged(solo, before, "bytes_changed", path)
    message = _trust_unchanged(solo, before, "unknown_signer", _write_trust(solo, new, "alice", "bob", kind="policy"))
    assert "kind 'trust'" in message


def test_widening_a_two_key_trust_needs_the_loosening_quorum(env: Env):
    current = Trust.load(env.home.trust)
    new = current.successor(add={"carol": env.keys["carol"].with_suffix(".pub")})
    before = env.snapshot()
    message = _trust_unchanged(env, before, "not_enough_signers", _write_trust(env, new, "alice", "carol"))
    assert "loosening quorum" in message
    path = _write_trust(env, new, "alice", "carol")
    sign_file(path, env.keys["bob"], kind="trust")
    assert rotate_trust(env.home, path).version == 2


def test_removing_a_lost_key_needs_only_the_threshold(env: Env):
    new = Trust.load(env.home.trust).successor(remove=[env.kid("bob")])
    assert rotate_trust(env.home, _write_trust(env, new, "alice")).keys.keys() == {env.kid("alice")}


def test_rotation_refused_when_the_active_policy_would_not_verify(env: Env):
    # v1 is signed by alice only; a trust without alice would brick the gateway at start-up
    new = Trust.load(env.home.trust).successor(remove=[env.kid("alice")])
    path = _write_trust(env, new, "alice", "bob")
    message = _trust_unchanged(env, env.snapshot(), "active_policy_unverifiable", path)
    assert "co-sign" in message
    sign_file(env.home.active_policy, env.keys["bob"])  # bob co-signs the installed bytes
    assert rotate_trust(env.home, path).version == 2
    assert PolicyStore(env.home, now=lambda: NOW).load_active().signers == {env.kid("bob")}


# --- trust rotation: each refusal says exactly what is wrong (mutation-tested) -----------------


def test_rotation_refusals_name_the_file_and_the_problem_exactly(solo: Env):
    before = solo.snapshot()
    missing = solo.root / "absent-trust.json"
    message = _trust_unchanged(solo, before, "invalid_trust", missing)
    assert message == f"cannot read {missing}: No such file or directory"
    new = Trust.load(solo.home.trust).successor(add={"bob": solo.keys["bob"].with_suffix(".pub")})
    unsigned = _write_trust(solo, new)
    message = _trust_unchanged(solo, before, "unsigned", unsigned)
    assert message == f"{unsigned}: the trust document is not signed (no signature file or no signatures in it)"
    forged = _write_trust(solo, new, "alice", "bob")
    doc = read_sig_file(forged)
    for entry in doc["signatures"]:
        if entry["key_id"] == solo.kid("alice"):
            entry["sig"] = base64.b64encode(b"\x02" * 64).decode()
    sig_path_for(forged).write_text(json.dumps(doc))
    message = _trust_unchanged(solo, before, "unknown_signer", forged)
    assert message == f"{forged}: signature(s) that do not verify: alice ({solo.kid('alice')}); refusing"
    as_policy = _write_trust(solo, new, "alice", "bob", kind="policy")
    message = _trust_unchanged(solo, before, "unknown_signer", as_policy)
    assert message == (
        f"{as_policy}: signature(s) by alice ({solo.kid('alice')}) were made as policy signatures; "
        "sign a trust document as kind 'trust'"
    )


def test_rotation_refusal_counts_name_the_signers_it_found(solo: Env):
    new = Trust.load(solo.home.trust).successor(
        add={"bob": solo.keys["bob"].with_suffix(".pub")}, remove=[solo.kid("alice")]
    )
    message = _trust_unchanged(solo, solo.snapshot(), "not_enough_signers", _write_trust(solo, new, "alice"))
    assert message == (
        "the new trust document needs 1 distinct signer(s) among its OWN keys (proving they are held); "
        "it has 0: none"
    )
    widened = Trust.load(solo.home.trust).successor(add={"bob": solo.keys["bob"].with_suffix(".pub")})
    message = _trust_unchanged(solo, solo.snapshot(), "not_enough_signers", _write_trust(solo, widened, "bob"))
    assert message.startswith("the new trust document needs 1 distinct signer(s) of the CURRENT trust (it adds a signer")
    assert message.endswith("it has 0: none")


def test_rotation_keeps_the_old_trust_and_its_signatures_in_the_history(solo: Env):
    old_bytes = solo.home.trust.read_bytes()
    old_sig = sig_path_for(solo.home.trust)
    old_sig_bytes = old_sig.read_bytes() if old_sig.exists() else None
    new = Trust.load(solo.home.trust).successor(add={"bob": solo.keys["bob"].with_suffix(".pub")})
    rotate_trust(solo.home, _write_trust(solo, new, "alice", "bob"), confirmed_key_ids=[solo.kid("bob")])
    history = solo.home.policy_history / "trust-v1.json"
    assert history.read_bytes() == old_bytes
    if old_sig_bytes is not None:
        assert sig_path_for(history).read_bytes() == old_sig_bytes


def test_successor_changes_only_what_it_is_asked_to(solo: Env):
    current = Trust.load(solo.home.trust)
    with pytest.raises(TrustError) as info:
        current.successor(remove=["0123456789abcdef", "fedcba9876543210"])
    assert info.value.code == "invalid_trust"
    assert info.value.message == "cannot remove keys that are not trusted: 0123456789abcdef, fedcba9876543210"
    two = current.successor(add={"bob": solo.keys["bob"].with_suffix(".pub")}, threshold=2, loosen_threshold=2)
    assert (two.version, two.threshold, two.loosen_threshold) == (current.version + 1, 2, 2)
    same = two.successor()
    assert (same.threshold, same.loosen_threshold, set(same.keys)) == (2, 2, set(two.keys))


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"version": 1, "threshold": 1, "loosen_threshold": 1}', "t.json: invalid trust file: keys: not set"),
        (b'{"version": 1, "threshold": 1, "loosen_threshold": 1, "keys": {}, "extra": 1}',
         "t.json: invalid trust file: extra: unknown field"),
        (b'{"version": 1, "threshold": 1, "loosen_threshold": 1, "keys": {}}',
         "t.json: invalid trust file: keys: at least one trusted key is needed"),
        (b'{"version": 0, "threshold": 1, "loosen_threshold": 1, "keys": {"abc": {}}}',
         "t.json: invalid trust file: version: Input should be greater than or equal to 1; "
         "keys.abc.public_key: not set; keys.abc.name: not set"),
    ],
)
def test_an_invalid_trust_document_is_explained_field_by_field(data, message):
    with pytest.raises(TrustError) as info:
        Trust.parse(data, source="t.json")
    assert (info.value.code, info.value.message) == ("invalid_trust", message)


def test_a_missing_or_unreadable_trust_file_means_no_policy_is_trusted(tmp_path: Path, solo: Env):
    missing = tmp_path / "trust.json"
    with pytest.raises(TrustError) as info:
        Trust.load(missing)
    assert (info.value.code, info.value.message) == (
        "trust_unavailable", f"no trust file at {missing}; the gateway trusts no policy signer"
    )
    missing.mkdir()
    with pytest.raises(TrustError) as info:
        Trust.load(missing)
    assert (info.value.code, info.value.message) == ("trust_unavailable", f"cannot read trust file {missing}: Is a directory")
    solo.home.trust.write_bytes(b"{}")
    with pytest.raises(PolicyRefused) as refused:
        solo.store.trust()
    # Any trust problem, even an invalid document, means no policy can be trusted.
    assert refused.value.code == "trust_unavailable"
    assert refused.value.message.startswith(f"{solo.home.trust}: invalid trust file: ")
    assert str(refused.value) == refused.value.message
    solo.home.trust.unlink()
    with pytest.raises(PolicyRefused) as refused:
        solo.store.trust()
    assert (refused.value.code, refused.value.message) == (
        "trust_unavailable", f"no trust file at {solo.home.trust}; the gateway trusts no policy signer"
    )


def test_a_trust_file_is_two_space_json_and_names_keys_by_their_name(solo: Env):
    trust = Trust.load(solo.home.trust)
    text = trust.to_bytes().decode()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert Trust.parse(trust.to_bytes()) == trust
    alice = solo.kid("alice")
    assert trust.name_of(alice) == f"alice ({alice})"
    assert trust.name_of("0123456789abcdef") == "0123456789abcdef"
    unnamed = Trust.build([("", solo.keys["alice"].with_suffix(".pub"))])
    assert unnamed.name_of(alice) == alice
