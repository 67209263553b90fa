"""Ed25519 policy signatures and the trust file."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.policy.signing import (
    KeyFileError,
    SignatureError,
    examine_signatures,
    generate_keypair,
    key_id_of,
    load_private_key,
    load_public_key,
    read_sig_file,
    sig_path_for,
    sign_file,
    verify_signatures,
)
from gateway.policy.trust import Trust, TrustError

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("alice", "bob", "carol"):
        path = tmp_path / "keys" / f"{name}.key"
        generate_keypair(path)
        out[name] = path
    return out


@pytest.fixture
def trust(keys: dict[str, Path]) -> Trust:
    # alice and bob are trusted; carol is not
    return Trust.build({"alice": keys["alice"].with_suffix(".pub"), "bob": keys["bob"].with_suffix(".pub")})


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_bytes(DEFAULT_POLICY.read_bytes())
    return path


def kid(key_path: Path) -> str:
    return key_id_of(load_public_key(key_path.with_suffix(".pub")))


# --- keys -------------------------------------------------------------------------------------


def test_generate_keypair_writes_private_owner_only_and_raw_public_base64(tmp_path: Path):
    path = tmp_path / "signing" / "op.key"
    key_id = generate_keypair(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    raw = base64.b64decode(path.with_suffix(".pub").read_text().strip(), validate=True)
    assert len(raw) == 32
    assert key_id == hashlib.sha256(raw).hexdigest()[:16]
    private = load_private_key(path)
    assert key_id_of(private.public_key()) == key_id
    assert key_id_of(raw) == key_id


def test_generate_keypair_refuses_to_overwrite(tmp_path: Path):
    path = tmp_path / "op.key"
    generate_keypair(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(path)
    assert path.read_bytes() == before


def test_load_private_key_refuses_loose_permissions(tmp_path: Path):
    path = tmp_path / "op.key"
    generate_keypair(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)


def test_load_private_key_refuses_other_algorithms_without_quoting_the_key(tmp_path: Path):
    path = tmp_path / "ec.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    assert "Ed25519" in str(info.value)
    body = pem.decode().splitlines()[1]
    assert body not in str(info.value)

    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n")
    garbage.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_private_key(garbage)
    assert "c2VjcmV0" not in str(info.value)


# --- signing ----------------------------------------------------------------------------------


def test_sign_file_writes_sig_document_over_exact_bytes(policy_file: Path, keys):
    sig_path = sign_file(policy_file, keys["alice"])
    assert sig_path == sig_path_for(policy_file) == policy_file.with_name("policy.yaml.sig")
    doc = json.loads(sig_path.read_text())
    digest = hashlib.sha256(policy_file.read_bytes()).hexdigest()
    assert doc["sha256"] == digest
    assert [e["key_id"] for e in doc["signatures"]] == [kid(keys["alice"])]
    # the signed message is domain-separated
    public = load_public_key(keys["alice"].with_suffix(".pub"))
    public.verify(base64.b64decode(doc["signatures"][0]["sig"]), b"risk-gateway-policy-v1\n" + digest.encode())


def test_second_signer_extends_and_same_key_does_not_duplicate(policy_file: Path, keys):
    sign_file(policy_file, keys["alice"])
    sign_file(policy_file, keys["bob"])
    sign_file(policy_file, keys["alice"])
    doc = read_sig_file(policy_file)
    assert [e["key_id"] for e in doc["signatures"]] == [kid(keys["alice"]), kid(keys["bob"])]


def test_signing_changed_bytes_starts_a_fresh_list(policy_file: Path, keys):
    sign_file(policy_file, keys["alice"])
    sign_file(policy_file, keys["bob"])
    policy_file.write_bytes(policy_file.read_bytes() + b"# edited\n")
    sign_file(policy_file, keys["bob"])
    doc = read_sig_file(policy_file)
    assert doc["sha256"] == hashlib.sha256(policy_file.read_bytes()).hexdigest()
    assert [e["key_id"] for e in doc["signatures"]] == [kid(keys["bob"])]


def test_sign_file_refuses_to_clobber_a_corrupt_sig(policy_file: Path, keys):
    sig_path_for(policy_file).write_text("not json")
    with pytest.raises(SignatureError, match="remove it"):
        sign_file(policy_file, keys["alice"])
    assert sig_path_for(policy_file).read_text() == "not json"


# --- verification -----------------------------------------------------------------------------


def test_verify_returns_distinct_trusted_signers(policy_file: Path, keys, trust: Trust):
    for name in ("alice", "bob", "carol"):
        sign_file(policy_file, keys[name])
    doc = read_sig_file(policy_file)
    doc["signatures"].append(dict(doc["signatures"][0]))  # alice again, by hand
    assert verify_signatures(policy_file.read_bytes(), doc, trust) == {kid(keys["alice"]), kid(keys["bob"])}
    report = examine_signatures(policy_file.read_bytes(), doc, trust)
    assert report.untrusted == {kid(keys["carol"])}


def test_verify_refuses_changed_bytes(policy_file: Path, keys, trust: Trust):
    sign_file(policy_file, keys["alice"])
    doc = read_sig_file(policy_file)
    data = bytearray(policy_file.read_bytes())
    data[-2] ^= 0x01
    with pytest.raises(SignatureError) as info:
        verify_signatures(bytes(data), doc, trust)
    assert info.value.code == "bytes_changed"
    assert "the policy's bytes do not match its signature file" in str(info.value)


def test_verify_with_a_forged_sha256_still_fails(policy_file: Path, keys, trust: Trust):
    sign_file(policy_file, keys["alice"])
    doc = read_sig_file(policy_file)
    other = policy_file.read_bytes() + b"# more\n"
    doc["sha256"] = hashlib.sha256(other).hexdigest()  # claims the new bytes, signature is for the old
    report = examine_signatures(other, doc, trust)
    assert report.valid == frozenset() and report.bad == {kid(keys["alice"])}


def test_verify_unsigned(policy_file: Path, trust: Trust):
    for doc in (None, {"sha256": "00", "signatures": []}, {"sha256": "00"}):
        with pytest.raises(SignatureError) as info:
            verify_signatures(policy_file.read_bytes(), doc, trust)
        assert info.value.code == "unsigned"


def test_untrusted_and_bad_signatures_do_not_count(policy_file: Path, keys, trust: Trust):
    sign_file(policy_file, keys["carol"])
    data = policy_file.read_bytes()
    assert verify_signatures(data, read_sig_file(policy_file), trust) == set()
    sign_file(policy_file, keys["alice"])
    doc = read_sig_file(policy_file)
    for entry in doc["signatures"]:
        if entry["key_id"] == kid(keys["alice"]):
            entry["sig"] = base64.b64encode(b"\x00" * 64).decode()
    assert verify_signatures(data, doc, trust) == set()


def test_a_trust_signature_is_not_a_policy_signature(policy_file: Path, keys, trust: Trust):
    sign_file(policy_file, keys["alice"], kind="trust")
    data, doc = policy_file.read_bytes(), read_sig_file(policy_file)
    assert verify_signatures(data, doc, trust) == set()
    assert examine_signatures(data, doc, trust).wrong_kind == {kid(keys["alice"])}
    assert verify_signatures(data, doc, trust, kind="trust") == {kid(keys["alice"])}


# --- the trust file ---------------------------------------------------------------------------


def test_trust_create_and_load_round_trip(tmp_path: Path, keys):
    path = tmp_path / "trust.json"
    created = Trust.create(path, [keys["alice"].with_suffix(".pub")])
    assert json.loads(path.read_text()) == {
        "version": 1,
        "threshold": 1,
        "loosen_threshold": 2,
        "keys": {kid(keys["alice"]): {"public_key": keys["alice"].with_suffix(".pub").read_text().strip(), "name": "alice"}},
    }
    assert Trust.load(path) == created
    with pytest.raises(TrustError, match="refusing to overwrite"):
        Trust.create(path, [keys["bob"].with_suffix(".pub")])


def _doc(key_paths, names=("alice", "bob"), **fields):
    doc = {
        "version": 1,
        "threshold": 1,
        "loosen_threshold": 2,
        "keys": {
            kid(key_paths[n]): {"public_key": key_paths[n].with_suffix(".pub").read_text().strip(), "name": n}
            for n in names
        },
    }
    doc.update(fields)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "fields, names, fragment",
    [
        ({"threshold": "1"}, ("alice", "bob"), "threshold"),
        ({"threshold": True}, ("alice", "bob"), "threshold"),
        ({"threshold": 3}, ("alice", "bob"), "more than the 2"),
        ({"loosen_threshold": 1}, ("alice",), "at least 2"),
        ({"loosen_threshold": 1, "threshold": 1}, ("alice", "bob"), "at least 2"),
        ({"threshold": 2, "loosen_threshold": 2, "version": 0}, ("alice", "bob"), "version"),
        ({"loosen_threshold": 3}, ("alice", "bob"), "no policy could ever loosen"),
        ({"extra": 1}, ("alice",), "unknown field"),
        ({"keys": {}}, (), "at least one"),
    ],
)
def test_trust_file_is_strict(keys, fields, names, fragment):
    with pytest.raises(TrustError) as info:
        Trust.parse(_doc(keys, names, **fields))
    assert fragment in str(info.value)
    assert info.value.code == "invalid_trust"


def test_trust_key_id_must_match_its_key(keys):
    doc = json.loads(_doc(keys, ("alice",)))
    (alice_id,) = doc["keys"]
    doc["keys"] = {kid(keys["bob"]): doc["keys"][alice_id]}
    with pytest.raises(TrustError, match=f"this public key's id is {alice_id}"):
        Trust.parse(json.dumps(doc).encode())


def test_single_key_trust_allows_unreachable_loosen_threshold(keys):
    trust = Trust.parse(_doc(keys, ("alice",)))
    assert trust.loosen_threshold == 2 and len(trust.keys) == 1
    with pytest.raises(Exception):
        trust.threshold = 2  # frozen
    assert isinstance(trust.public_key(kid(keys["alice"])), Ed25519PublicKey)
    assert trust.public_key(kid(keys["carol"])) is None


# --- each signature entry judged on its own (mutation-tested) ----------------------------------


def _entry(policy_file: Path, key: Path, kind: str = "policy") -> dict:
    """One key's signature entry over the file's current bytes, made as `policy sign` makes it."""
    from gateway.policy.signing import load_private_key, sign_bytes

    return sign_bytes(policy_file.read_bytes(), load_private_key(key), kind=kind)["signatures"][0]


def test_a_key_with_one_good_and_one_bad_entry_is_not_a_signer(policy_file: Path, keys, trust: Trust):
    sign_file(policy_file, keys["alice"])
    doc = read_sig_file(policy_file)
    doc["signatures"].append({"key_id": kid(keys["alice"]), "sig": base64.b64encode(b"\x01" * 64).decode()})
    report = examine_signatures(policy_file.read_bytes(), doc, trust)
    assert report.valid == frozenset() and report.bad == {kid(keys["alice"])}
    assert report.sha256 == hashlib.sha256(policy_file.read_bytes()).hexdigest()


def test_a_key_with_a_good_entry_and_one_of_another_kind_is_not_a_signer(policy_file: Path, keys, trust: Trust):
    sign_file(policy_file, keys["alice"])
    doc = read_sig_file(policy_file)
    doc["signatures"].append(_entry(policy_file, keys["alice"], kind="trust"))
    report = examine_signatures(policy_file.read_bytes(), doc, trust)
    assert report.valid == frozenset() and report.wrong_kind == {kid(keys["alice"])} and report.bad == frozenset()


def test_malformed_entries_are_named_by_position_and_the_rest_still_count(policy_file: Path, keys, trust: Trust):
    alice, bob = kid(keys["alice"]), kid(keys["bob"])
    good_bob = _entry(policy_file, keys["bob"])
    doc = {
        "sha256": hashlib.sha256(policy_file.read_bytes()).hexdigest(),
        "signatures": [
            "not an object",
            {"key_id": alice, "sig": 12345},  # a trusted key id, but the signature is not text
            {"key_id": "not a key id", "sig": good_bob["sig"]},
            {"key_id": kid(keys["carol"]), "sig": good_bob["sig"]},  # untrusted: skipped, not fatal
            {"key_id": alice, "sig": "!!! not base64 !!!"},
            good_bob,
        ],
    }
    report = examine_signatures(policy_file.read_bytes(), doc, trust)
    assert report.bad == {"entry #1", "entry #2", "entry #3", alice}
    assert report.untrusted == {kid(keys["carol"])}
    assert report.valid == {bob}


def test_a_signature_with_stray_characters_in_its_base64_is_bad(policy_file: Path, keys, trust: Trust):
    """Lenient base64 would drop the junk and accept a signature nobody wrote in that form."""
    entry = _entry(policy_file, keys["alice"])
    entry["sig"] = "!" + entry["sig"]
    doc = {"sha256": hashlib.sha256(policy_file.read_bytes()).hexdigest(), "signatures": [entry]}
    report = examine_signatures(policy_file.read_bytes(), doc, trust)
    assert report.valid == frozenset() and report.bad == {kid(keys["alice"])}


def test_a_signature_list_that_is_not_a_list_is_unsigned(policy_file: Path, trust: Trust):
    doc = {"sha256": hashlib.sha256(policy_file.read_bytes()).hexdigest(), "signatures": "alice"}
    with pytest.raises(SignatureError) as info:
        examine_signatures(policy_file.read_bytes(), doc, trust)
    assert info.value.code == "unsigned" and info.value.message == str(info.value)
    assert "not signed" in info.value.message


@pytest.mark.parametrize(
    "content, fragment",
    [("not json", "not JSON"), ("[1, 2]", "not a JSON object")],
)
def test_a_sig_file_that_is_not_a_signature_document_reads_as_unsigned(policy_file: Path, content, fragment):
    sig_path_for(policy_file).write_text(content)
    with pytest.raises(SignatureError) as info:
        read_sig_file(policy_file)
    assert info.value.code == "unsigned" and fragment in info.value.message
    assert str(sig_path_for(policy_file)) in info.value.message


def test_an_unreadable_sig_file_reads_as_unsigned(policy_file: Path):
    sig_path_for(policy_file).mkdir()  # exists, cannot be read as a file
    with pytest.raises(SignatureError) as info:
        read_sig_file(policy_file)
    assert info.value.code == "unsigned" and info.value.message.startswith(f"cannot read {sig_path_for(policy_file)}")


def test_signing_over_a_corrupt_sig_file_says_how_to_recover(policy_file: Path, keys):
    sig_path_for(policy_file).write_text("{")
    with pytest.raises(SignatureError) as info:
        sign_file(policy_file, keys["alice"])
    assert info.value.code == "unsigned" and "remove it to start a fresh one" in info.value.message


def test_public_keys_load_from_raw_bytes_text_and_files_with_exact_errors(tmp_path: Path, keys):
    from gateway.policy.signing import public_key_b64, public_key_from_b64

    pub = load_public_key(keys["alice"].with_suffix(".pub"))
    text = public_key_b64(pub)
    raw = base64.b64decode(text)
    assert kid_of_key(load_public_key(raw)) == kid_of_key(pub)
    assert kid_of_key(load_public_key(text)) == kid_of_key(pub)
    with pytest.raises(KeyFileError, match=r"^an Ed25519 public key is 32 bytes, this one is 31$"):
        load_public_key(raw[:31])
    with pytest.raises(KeyFileError, match=r"^an Ed25519 public key is 32 bytes, this one is 33$"):
        public_key_from_b64(base64.b64encode(raw + b"\x00").decode())
    with pytest.raises(KeyFileError, match=r"^public key is not valid base64$"):
        public_key_from_b64("!" + text)
    with pytest.raises(KeyFileError, match=r"^an Ed25519 public key is exactly 32 bytes$"):
        key_id_of(raw[:16])
    missing = tmp_path / "missing.pub"
    with pytest.raises(KeyFileError, match=rf"^cannot read public key {missing}: FileNotFoundError$"):
        load_public_key(missing)
    garbled = tmp_path / "garbled.pub"
    garbled.write_text("!" + text)
    with pytest.raises(KeyFileError, match=rf"^{garbled}: public key is not valid base64$"):
        load_public_key(garbled)


def kid_of_key(public_key) -> str:
    return key_id_of(public_key)


def test_key_files_refusals_name_the_path(tmp_path: Path):
    with pytest.raises(KeyFileError, match=r"the private key file must not end in \.pub$"):
        generate_keypair(tmp_path / "signer.pub")
    missing = tmp_path / "absent.key"
    with pytest.raises(KeyFileError, match=rf"^cannot read private key {missing}: No such file or directory$"):
        load_private_key(missing)
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(KeyFileError, match=rf"^{junk} is not an unencrypted PEM private key$"):
        load_private_key(junk)


def test_an_unknown_signature_kind_is_refused(policy_file: Path, keys):
    with pytest.raises(ValueError, match=r"^unknown signature kind 'other'$"):
        sign_file(policy_file, keys["alice"], kind="other")


def test_sig_file_format_is_two_space_json_with_a_final_newline(policy_file: Path, keys):
    sign_file(policy_file, keys["alice"])
    text = sig_path_for(policy_file).read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2) + "\n"


def test_a_public_key_file_with_non_ascii_text_is_unreadable(tmp_path: Path):
    path = tmp_path / "odd.pub"
    path.write_text("clé publique\n", encoding="utf-8")
    with pytest.raises(KeyFileError, match=rf"^cannot read public key {path}: UnicodeDecodeError$"):
        load_public_key(path)


def test_sign_bytes_signs_a_policy_unless_told_otherwise(policy_file: Path, keys, trust: Trust):
    from gateway.policy.signing import sign_bytes

    data = policy_file.read_bytes()
    doc = sign_bytes(data, load_private_key(keys["alice"]))
    assert verify_signatures(data, doc, trust) == {kid(keys["alice"])}


def test_refusal_messages_are_exact(policy_file: Path, keys, trust: Trust):
    with pytest.raises(SignatureError) as info:
        verify_signatures(policy_file.read_bytes(), None, trust)
    assert info.value.message == "the policy is not signed (no signature file or no signatures in it)"
    sign_file(policy_file, keys["alice"])
    with pytest.raises(SignatureError) as info:
        verify_signatures(policy_file.read_bytes() + b"\n", read_sig_file(policy_file), trust)
    assert info.value.message == (
        "the policy's bytes do not match its signature file "
        "(the file changed after it was signed; review the change and sign it again)"
    )
