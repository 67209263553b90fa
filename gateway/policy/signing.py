"""Ed25519 signatures over policy (and trust) files.

Public API
----------
``generate_keypair(path: Path) -> str``
    Create a new Ed25519 key pair. The private key is written to ``path`` as unencrypted PKCS#8
    PEM, owner-only (0600, atomically); the public key to ``path.with_suffix(".pub")`` as the
    base64 of the raw 32-byte key plus a newline. Returns the key id. Refuses to overwrite either
    file. (Inside a gateway home, name private keys ``signing/NAME.key`` so the home's permission
    check covers them.)
``load_private_key(path) -> Ed25519PrivateKey``
    Refuses files readable by group or others (like ssh) and anything but an Ed25519 key.
``load_public_key(source) -> Ed25519PublicKey``
    From a ``.pub`` file path, a base64 string or the raw 32 bytes.
``key_id_of(public_key) -> str``
    First 16 hex characters of SHA-256 over the raw 32-byte public key.
``public_key_b64(public_key) -> str``
``sig_path_for(path) -> Path``
    ``FILE`` -> ``FILE.sig``.
``sign_bytes(data, private_key, existing=None, *, kind="policy") -> dict``
    The signature document for ``data``, extending ``existing`` when it is for the same bytes.
``sign_file(path, private_key_path, *, kind="policy") -> Path``
    Writes or extends ``FILE.sig``; returns its path.
``read_sig_file(path) -> dict | None``
    The parsed ``.sig`` next to ``path`` (``None`` when there is none).
``examine_signatures(data, sig_doc, trust, *, kind="policy") -> SignatureReport``
    Every entry classified: valid and trusted, untrusted key, or bad signature.
``verify_signatures(data, sig_doc, trust, *, kind="policy") -> set[str]``
    The distinct trusted key ids whose signature verifies over exactly ``data``.

Signature file (``FILE.sig``, JSON)::

    {"sha256": "<hex SHA-256 of the file's exact bytes>",
     "signatures": [{"key_id": "<16 hex>", "sig": "<base64 Ed25519 signature>"}, ...]}

A second signer adds an entry; the same key signing again does not add a duplicate (Ed25519 is
deterministic, so its entry is simply refreshed); signing a file whose bytes no longer match the
recorded ``sha256`` starts a fresh list (the old signatures were for other bytes).

What is signed is domain-separated, so a signature can never be replayed across purposes::

    policy:  b"risk-gateway-policy-v1\\n" + sha256_hex.encode()
    trust:   b"risk-gateway-trust-v1\\n"  + sha256_hex.encode()

Errors are ``SignatureError`` (``.code`` in ``unsigned``, ``bytes_changed``, ``unknown_signer``)
or ``KeyFileError``; no message ever contains key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..home import write_private, write_public

if TYPE_CHECKING:  # pragma: no cover
    from .trust import Trust

Kind = Literal["policy", "trust"]

DOMAINS: dict[str, bytes] = {
    "policy": b"risk-gateway-policy-v1\n",
    "trust": b"risk-gateway-trust-v1\n",
}
POLICY_DOMAIN = DOMAINS["policy"]
TRUST_DOMAIN = DOMAINS["trust"]

_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


class SignatureError(ValueError):
    """A signature document that does not establish who signed these bytes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KeyFileError(ValueError):
    """A key file that cannot be used. Names the path, never the contents."""


# --- keys -------------------------------------------------------------------------------------


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey | bytes) -> str:
    """First 16 hex characters of SHA-256 over the raw 32-byte public key."""
    raw = public_key if isinstance(public_key, bytes) else _raw_public(public_key)
    if len(raw) != 32:
        raise KeyFileError("an Ed25519 public key is exactly 32 bytes")
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(_raw_public(public_key)).decode("ascii")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("public key is not valid base64") from None
    if len(raw) != 32:
        raise KeyFileError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(source: str | bytes | os.PathLike | Ed25519PublicKey) -> Ed25519PublicKey:
    """A public key from a ``.pub`` file, its base64 text, or the raw 32 bytes."""
    if isinstance(source, Ed25519PublicKey):
        return source
    if isinstance(source, bytes):
        if len(source) != 32:
            raise KeyFileError(f"an Ed25519 public key is 32 bytes, this one is {len(source)}")
        return Ed25519PublicKey.from_public_bytes(source)
    if isinstance(source, os.PathLike):
        path = Path(source)
        try:
            text = path.read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read public key {path}: {type(exc).__name__}") from None
        try:
            return public_key_from_b64(text)
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None
    return public_key_from_b64(source)


def generate_keypair(path: Path) -> str:
    """Write a new private key to ``path`` (0600) and its public key to ``path.with_suffix('.pub')``."""
    path = Path(path)
    pub_path = path.with_suffix(".pub")
    if pub_path == path:
        raise KeyFileError(f"{path}: the private key file must not end in .pub")
    for existing in (path, pub_path):
        if existing.exists():
            raise KeyFileError(f"{existing} already exists; refusing to overwrite a key")
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    public_key = private_key.public_key()
    write_public(pub_path, (public_key_b64(public_key) + "\n").encode("ascii"))
    return key_id_of(public_key)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key (PEM). Refuses one readable by group or others."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror or type(exc).__name__}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"private key {path} has mode {mode:o}; it must be readable by its owner only (chmod 600 {path})"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message could quote the input; say only what and where.
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key")
    return key


# --- signature documents ----------------------------------------------------------------------


def sig_path_for(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sig")


def _message(sha256_hex: str, kind: str) -> bytes:
    try:
        domain = DOMAINS[kind]
    except KeyError:
        raise ValueError(f"unknown signature kind {kind!r}") from None
    return domain + sha256_hex.encode("ascii")


def _parse_entries(sig_doc: Any) -> list[dict[str, Any]]:
    if not isinstance(sig_doc, dict):
        return []
    entries = sig_doc.get("signatures")
    return entries if isinstance(entries, list) else []


def sign_bytes(
    data: bytes,
    private_key: Ed25519PrivateKey,
    existing: dict[str, Any] | None = None,
    *,
    kind: Kind = "policy",
) -> dict[str, Any]:
    """The signature document for ``data`` with this key's signature added."""
    digest = hashlib.sha256(data).hexdigest()
    key_id = key_id_of(private_key.public_key())
    entry = {
        "key_id": key_id,
        "sig": base64.b64encode(private_key.sign(_message(digest, kind))).decode("ascii"),
    }
    entries: list[dict[str, Any]] = []
    if existing is not None and existing.get("sha256") == digest:
        entries = [dict(e) for e in _parse_entries(existing) if isinstance(e, dict)]
    merged: list[dict[str, Any]] = []
    placed = False
    for old in entries:
        if old.get("key_id") == key_id:
            if not placed:  # refresh this key's entry in place; drop any duplicate of it
                merged.append(entry)
                placed = True
            continue
        merged.append(old)
    if not placed:
        merged.append(entry)
    entries = merged
    return {"sha256": digest, "signatures": entries}


def dump_sig_doc(sig_doc: dict[str, Any]) -> bytes:
    return (json.dumps(sig_doc, indent=2) + "\n").encode("utf-8")


def read_sig_file(path: Path) -> dict[str, Any] | None:
    """The parsed ``FILE.sig`` for ``path`` (pass the signed file, not the .sig); None if absent.

    Raises SignatureError(``unsigned``) when the file exists but is not a signature document.
    """
    sig_path = sig_path_for(path)
    try:
        raw = sig_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SignatureError("unsigned", f"cannot read {sig_path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("unsigned", f"{sig_path} is not a signature file (not JSON)") from None
    if not isinstance(doc, dict):
        raise SignatureError("unsigned", f"{sig_path} is not a signature file (not a JSON object)")
    return doc


def sign_file(policy_path: Path, private_key_path: Path, *, kind: Kind = "policy") -> Path:
    """Sign ``policy_path``'s exact bytes; write or extend ``FILE.sig``. Returns the .sig path."""
    policy_path = Path(policy_path)
    private_key = load_private_key(private_key_path)
    data = policy_path.read_bytes()
    if kind == "policy":
        _refuse_ambiguous_yaml(policy_path, data)
    sig_path = sig_path_for(policy_path)
    try:
        existing = read_sig_file(policy_path)
    except SignatureError:
        raise SignatureError(
            "unsigned",
            f"{sig_path} exists but is not a signature file; remove it to start a fresh one",
        ) from None
    doc = sign_bytes(data, private_key, existing, kind=kind)
    write_public(sig_path, dump_sig_doc(doc))
    return sig_path


def _refuse_ambiguous_yaml(path: Path, data: bytes) -> None:
    """A signer vouches for what they read: refuse to sign YAML whose meaning is not what it
    shows (a duplicated key, a merge key). Other problems are for ``policy verify`` to report."""
    import yaml

    from .strict_yaml import StrictYamlError, load_strict

    try:
        load_strict(data)
    except StrictYamlError as exc:
        raise SignatureError("ambiguous_yaml", f"refusing to sign {path}: {exc}") from None
    except yaml.YAMLError:
        pass


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureReport:
    """Every signature entry classified against a trust set."""

    sha256: str
    valid: frozenset[str] = frozenset()  # distinct trusted key ids with a good signature
    untrusted: frozenset[str] = frozenset()  # key ids not in the trust set (not checked)
    bad: frozenset[str] = frozenset()  # trusted key ids (or malformed entries) that fail
    wrong_kind: frozenset[str] = frozenset()  # good signatures, but made for another purpose


def examine_signatures(
    data: bytes, sig_doc: dict[str, Any] | None, trust: "Trust", *, kind: Kind = "policy"
) -> SignatureReport:
    """Classify each signature. Raises SignatureError for ``unsigned`` and ``bytes_changed``."""
    entries = _parse_entries(sig_doc)
    if sig_doc is None or not entries:
        raise SignatureError("unsigned", "the policy is not signed (no signature file or no signatures in it)")
    digest = hashlib.sha256(data).hexdigest()
    claimed = sig_doc.get("sha256")
    if not isinstance(claimed, str) or claimed.lower() != digest:
        raise SignatureError(
            "bytes_changed",
            "the policy's bytes do not match its signature file "
            "(the file changed after it was signed; review the change and sign it again)",
        )
    message = _message(digest, kind)
    other_kinds = [k for k in DOMAINS if k != kind]
    valid: set[str] = set()
    untrusted: set[str] = set()
    bad: set[str] = set()
    wrong_kind: set[str] = set()
    for position, entry in enumerate(entries):
        key_id = entry.get("key_id") if isinstance(entry, dict) else None
        sig_b64 = entry.get("sig") if isinstance(entry, dict) else None
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id) or not isinstance(sig_b64, str):
            bad.add(f"entry #{position + 1}")
            continue
        public_key = trust.public_key(key_id)
        if public_key is None:
            untrusted.add(key_id)
            continue
        try:
            signature = base64.b64decode(sig_b64, validate=True)
        except (binascii.Error, ValueError):
            bad.add(key_id)
            continue
        if _verifies(public_key, signature, message):
            valid.add(key_id)
        elif any(_verifies(public_key, signature, _message(digest, k)) for k in other_kinds):
            wrong_kind.add(key_id)
        else:
            bad.add(key_id)
    # A key with one good and one bad entry is still a bad signature: fail closed.
    valid -= bad | wrong_kind
    return SignatureReport(
        sha256=digest,
        valid=frozenset(valid),
        untrusted=frozenset(untrusted),
        bad=frozenset(bad),
        wrong_kind=frozenset(wrong_kind),
    )


def _verifies(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_signatures(
    data: bytes, sig_doc: dict[str, Any] | None, trust: "Trust", *, kind: Kind = "policy"
) -> set[str]:
    """Distinct trusted key ids whose signature verifies over exactly ``data``.

    Raises SignatureError(``unsigned``) when there are no signatures and
    SignatureError(``bytes_changed``) when the document's sha256 is not that of ``data``.
    Entries from untrusted keys and bad signatures are not counted (``examine_signatures``
    reports them).
    """
    return set(examine_signatures(data, sig_doc, trust, kind=kind).valid)
