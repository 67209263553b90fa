"""The trust file: which policy-signing keys this gateway accepts, and how many must agree.

``trust.json``::

    {"version": 1, "threshold": 1, "loosen_threshold": 2,
     "keys": {"<key id>": {"public_key": "<base64 raw Ed25519 key>", "name": "alice"}}}

* ``threshold``: distinct trusted signers any policy needs to take effect.
* ``loosen_threshold``: distinct trusted signers a policy needs when it loosens anything relative
  to the active one (see ``gateway.policy.diff``). It must be at least ``threshold`` and at least
  2 (four-eyes), and, when two or more keys are trusted, no more than the number of keys (so it
  can be reached). With exactly one trusted key it stays 2 and therefore cannot be reached: a
  single-key gateway can tighten its policy but never loosen it. That is deliberate; the refusal
  tells the operator to add a second signer (a trust rotation).
* a key id must be ``key_id_of`` its public key, so a typo cannot make a key count under another
  key's name.

Public API
----------
``TrustedKey(public_key: str, name: str)``, ``Trust(version, threshold, loosen_threshold, keys)``
    Pydantic models, strict, frozen, unknown fields refused.
``Trust.load(path) -> Trust`` / ``Trust.parse(data, source=...) -> Trust``
``Trust.build(public_keys, *, threshold=1, loosen_threshold=2, version=1) -> Trust``
``Trust.create(path, public_keys, *, threshold=1, loosen_threshold=2, version=1, overwrite=False) -> Trust``
    ``public_keys`` is a mapping ``name -> key`` or an iterable of keys or ``(name, key)`` pairs;
    a key is an ``Ed25519PublicKey``, its raw 32 bytes, its base64 text or a path to a ``.pub``
    file (then the file's stem is the default name). ``create`` writes ``path`` (0644, atomic)
    and refuses to overwrite unless told.
``Trust.successor(*, add=(), remove=(), threshold=None, loosen_threshold=None) -> Trust``
    The next version, for preparing a rotation.
``trust.public_key(key_id) -> Ed25519PublicKey | None``, ``trust.to_bytes() -> bytes``
``rotate_trust(home, new_trust_path) -> Trust``
    Replaces ``home.trust`` with the document at ``new_trust_path``, in the manner of TUF's root
    rotation; raises ``TrustError`` (with ``.code``) and leaves everything untouched otherwise.

Trust rotation rules (``rotate_trust``)
---------------------------------------
The new document is signed like a policy but for the ``trust`` purpose
(``sign_file(path, key, kind="trust")``, its own ``FILE.sig``). It is accepted only when:

1. it is a valid trust document with a strictly higher ``version`` (``trust_rollback``);
2. its signatures are over its exact bytes (``unsigned``, ``bytes_changed``) and none of the
   signatures by keys of either document is bad (``unknown_signer``);
3. at least ``threshold`` keys of the CURRENT trust signed it (TUF: the old root vouches for the
   new one) (``not_enough_signers``);
4. at least ``threshold`` keys of the NEW trust signed it too (TUF: the new keys prove they are
   held, so a mistyped key cannot lock the gateway out) (``not_enough_signers``);
5. if it widens authority (adds a key, lowers ``threshold`` or ``loosen_threshold``) it needs
   ``loosen_threshold`` current signers: adding a signer is what later makes loosening
   possible, so it gets the four-eyes rule too (``not_enough_signers``). A trust with fewer keys
   than that (a one-key home made before ``init`` created two signers) cannot reach it; there a
   new signer is added only with an operator's confirmation on the gateway host, naming the new
   key's id (``confirmed_key_ids``, ``gatewayctl trust add-key --confirm-on-host KEY_ID``),
   plus ``threshold`` current signers (``needs_host_confirmation``). One key holder alone can
   therefore never add a second key of their own and then loosen;
6. the installed policy still verifies under the new trust with its ``threshold`` (otherwise
   the gateway would refuse to start): have the new keys co-sign ``policy/active.yaml`` first
   (``active_policy_unverifiable``).

On success the old trust file is kept as ``policy/history/trust-v{N}.json`` and the signature
document is stored as ``trust.json.sig`` beside the new one. The local ``trust.json`` itself is
the root of trust: it is read as is, not verified against anything.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..home import Home, write_public
from .signing import (
    KeyFileError,
    SignatureError,
    dump_sig_doc,
    examine_signatures,
    key_id_of,
    load_public_key,
    public_key_b64,
    read_sig_file,
    sig_path_for,
)

_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


class TrustError(ValueError):
    """A trust file that cannot be used, or a rotation that was refused. ``.code`` is stable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TrustedKey(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    public_key: str
    name: str

    @model_validator(mode="after")
    def _is_ed25519(self) -> "TrustedKey":
        try:
            raw = base64.b64decode(self.public_key, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("public_key is not valid base64") from None
        if len(raw) != 32:
            raise ValueError(f"public_key must be a raw 32-byte Ed25519 key, this one is {len(raw)} bytes")
        return self


class Trust(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    version: int = Field(..., ge=1)
    threshold: int = Field(..., ge=1)
    loosen_threshold: int = Field(..., ge=1)
    keys: dict[str, TrustedKey]

    @model_validator(mode="after")
    def _consistent(self) -> "Trust":
        if not self.keys:
            raise ValueError("keys: at least one trusted key is needed")
        for key_id, key in self.keys.items():
            if not _KEY_ID.match(key_id):
                raise ValueError(f"keys.{key_id}: a key id is 16 lowercase hex characters")
            actual = key_id_of(base64.b64decode(key.public_key))
            if actual != key_id:
                raise ValueError(f"keys.{key_id}: this public key's id is {actual}, not {key_id}")
        n = len(self.keys)
        if self.threshold > n:
            raise ValueError(f"threshold {self.threshold} is more than the {n} trusted key(s)")
        if self.loosen_threshold < self.threshold:
            raise ValueError(
                f"loosen_threshold {self.loosen_threshold} is below threshold {self.threshold}; "
                "loosening must need at least as many signers as any change"
            )
        if self.loosen_threshold < 2:
            raise ValueError(
                "loosen_threshold must be at least 2: loosening a limit always needs two people "
                "(with a single trusted key, loosening is deliberately impossible)"
            )
        if n >= 2 and self.loosen_threshold > n:
            raise ValueError(
                f"loosen_threshold {self.loosen_threshold} is more than the {n} trusted keys; "
                "no policy could ever loosen a limit"
            )
        return self

    # --- reading / writing --------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, *, source: str = "trust document") -> "Trust":
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise TrustError("invalid_trust", f"{source}: {_explain(exc)}") from None

    @classmethod
    def load(cls, path: Path) -> "Trust":
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TrustError("trust_unavailable", f"no trust file at {path}; the gateway trusts no policy signer") from None
        except OSError as exc:
            raise TrustError("trust_unavailable", f"cannot read trust file {path}: {exc.strerror}") from None
        return cls.parse(data, source=str(path))

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2) + "\n").encode("utf-8")

    @classmethod
    def build(
        cls,
        public_keys: Mapping[str, Any] | Iterable[Any],
        *,
        threshold: int = 1,
        loosen_threshold: int = 2,
        version: int = 1,
    ) -> "Trust":
        keys = _key_entries(public_keys)
        document = {"version": version, "threshold": threshold, "loosen_threshold": loosen_threshold, "keys": keys}
        return cls.parse(json.dumps(document).encode(), source="new trust document")

    @classmethod
    def create(
        cls,
        path: Path,
        public_keys: Mapping[str, Any] | Iterable[Any],
        *,
        threshold: int = 1,
        loosen_threshold: int = 2,
        version: int = 1,
        overwrite: bool = False,
    ) -> "Trust":
        path = Path(path)
        if path.exists() and not overwrite:
            raise TrustError("trust_exists", f"{path} already exists; refusing to overwrite the trust file")
        trust = cls.build(public_keys, threshold=threshold, loosen_threshold=loosen_threshold, version=version)
        write_public(path, trust.to_bytes())
        return trust

    def successor(
        self,
        *,
        add: Mapping[str, Any] | Iterable[Any] = (),
        remove: Iterable[str] = (),
        threshold: int | None = None,
        loosen_threshold: int | None = None,
    ) -> "Trust":
        """The next version with keys added/removed (by key id); validate as a whole."""
        removed = set(remove)
        unknown = removed - set(self.keys)
        if unknown:
            raise TrustError("invalid_trust", f"cannot remove keys that are not trusted: {', '.join(sorted(unknown))}")
        keys = {k: v.model_dump() for k, v in self.keys.items() if k not in removed}
        keys.update(_key_entries(add))
        document = {
            "version": self.version + 1,
            "threshold": self.threshold if threshold is None else threshold,
            "loosen_threshold": self.loosen_threshold if loosen_threshold is None else loosen_threshold,
            "keys": keys,
        }
        return Trust.parse(json.dumps(document).encode(), source="new trust document")

    # --- use ----------------------------------------------------------------------------------

    def public_key(self, key_id: str) -> Ed25519PublicKey | None:
        key = self.keys.get(key_id)
        if key is None:
            return None
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))

    def name_of(self, key_id: str) -> str:
        key = self.keys.get(key_id)
        return f"{key.name} ({key_id})" if key is not None and key.name != key_id else key_id

    def widens(self, new: "Trust") -> bool:
        """Whether ``new`` gives signers more power than this trust does."""
        return (
            bool(set(new.keys) - set(self.keys))
            or new.threshold < self.threshold
            or new.loosen_threshold < self.loosen_threshold
        )


def _named_keys(public_keys: Mapping[str, Any] | Iterable[Any]) -> Iterator[tuple[str, Any]]:
    if isinstance(public_keys, Mapping):
        yield from ((str(name), key) for name, key in public_keys.items())
        return
    for item in public_keys:
        if isinstance(item, tuple) and len(item) == 2:
            yield str(item[0]), item[1]
        elif isinstance(item, os.PathLike):
            yield Path(item).stem, item
        else:
            yield "", item


def _key_entries(public_keys: Mapping[str, Any] | Iterable[Any]) -> dict[str, dict[str, str]]:
    keys: dict[str, dict[str, str]] = {}
    for name, source in _named_keys(public_keys):
        try:
            public_key = load_public_key(source)
        except KeyFileError as exc:
            raise TrustError("invalid_trust", f"key {name or '(unnamed)'}: {exc}") from None
        key_id = key_id_of(public_key)
        keys[key_id] = {"public_key": public_key_b64(public_key), "name": name or key_id}
    return keys


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "not set"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}" if where else message)
    return "invalid trust file: " + "; ".join(parts)


@contextmanager
def home_lock(home: Home) -> Iterator[None]:
    """Serialise policy and trust changes within one home (an advisory file lock)."""
    home.policy_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(home.policy_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _names(trust: Trust, key_ids: Iterable[str]) -> str:
    ids = sorted(key_ids)
    return ", ".join(trust.name_of(k) for k in ids) if ids else "none"


def rotate_trust(home: Home, new_trust_path: Path, *, confirmed_key_ids: Iterable[str] = ()) -> Trust:
    """Install the trust document at ``new_trust_path`` (see the module docstring for the rules).
    ``confirmed_key_ids``: new keys an operator confirmed on the host (rule 5)."""
    from .store import read_installed  # store imports this module

    new_trust_path = Path(new_trust_path)
    with home_lock(home):
        current = Trust.load(home.trust)
        try:
            data = new_trust_path.read_bytes()
        except OSError as exc:
            raise TrustError("invalid_trust", f"cannot read {new_trust_path}: {exc.strerror}") from None
        new = Trust.parse(data, source=str(new_trust_path))
        if new.version <= current.version:
            raise TrustError(
                "trust_rollback",
                f"the new trust document has version {new.version}, not above the current version "
                f"{current.version}; a rotation must increase the version",
            )
        try:
            sig_doc = read_sig_file(new_trust_path)
            by_current = examine_signatures(data, sig_doc, current, kind="trust")
            by_new = examine_signatures(data, sig_doc, new, kind="trust")
        except SignatureError as exc:
            message = exc.message.replace("the policy", "the trust document")
            raise TrustError(exc.code, f"{new_trust_path}: {message}") from None
        for report, trust in ((by_current, current), (by_new, new)):
            if report.bad:
                raise TrustError(
                    "unknown_signer",
                    f"{new_trust_path}: signature(s) that do not verify: {_names(trust, report.bad)}; refusing",
                )
            if report.wrong_kind:
                raise TrustError(
                    "unknown_signer",
                    f"{new_trust_path}: signature(s) by {_names(trust, report.wrong_kind)} were made as policy "
                    "signatures; sign a trust document as kind 'trust'",
                )
        need_current = current.threshold
        widening = current.widens(new)
        if widening and len(current.keys) >= current.loosen_threshold:
            need_current = max(need_current, current.loosen_threshold)
        if len(by_current.valid) < need_current:
            why = " (it adds a signer or lowers a threshold, so it needs the loosening quorum)" if widening else ""
            raise TrustError(
                "not_enough_signers",
                f"the new trust document needs {need_current} distinct signer(s) of the CURRENT trust{why}; "
                f"it has {len(by_current.valid)}: {_names(current, by_current.valid)}",
            )
        if len(by_new.valid) < new.threshold:
            raise TrustError(
                "not_enough_signers",
                f"the new trust document needs {new.threshold} distinct signer(s) among its OWN keys "
                f"(proving they are held); it has {len(by_new.valid)}: {_names(new, by_new.valid)}",
            )
        if widening and len(current.keys) < current.loosen_threshold:
            added = set(new.keys) - set(current.keys)
            unconfirmed = sorted(added - set(confirmed_key_ids))
            if unconfirmed:
                raise TrustError(
                    "needs_host_confirmation",
                    f"the current trust has {len(current.keys)} key(s), fewer than the {current.loosen_threshold} "
                    "signers that widening needs, so one key holder could add a key of their own and then loosen "
                    "the policy alone. An operator on the gateway host must confirm the new signer: "
                    f"gatewayctl trust add-key --confirm-on-host {unconfirmed[0]} ...",
                )
        installed = read_installed(home)
        if installed is not None:
            policy_bytes, policy_sig = installed
            try:
                still = examine_signatures(policy_bytes, policy_sig, new, kind="policy").valid
            except SignatureError:
                still = frozenset()
            if len(still) < new.threshold:
                raise TrustError(
                    "active_policy_unverifiable",
                    f"under the new trust the installed policy ({home.active_policy}) would have "
                    f"{len(still)} valid signer(s), below threshold {new.threshold}, and the gateway "
                    f"would refuse to start; first have keys of the new trust co-sign it "
                    f"(gatewayctl policy sign {home.active_policy} --key KEY)",
                )

        # Keep the old root, then install the new one with its signatures beside it.
        old_path = home.trust
        history = home.policy_history / f"trust-v{current.version}.json"
        write_public(history, old_path.read_bytes())
        old_sig = sig_path_for(old_path)
        if old_sig.exists():
            write_public(sig_path_for(history), old_sig.read_bytes())
        write_public(old_path, data)
        write_public(old_sig, dump_sig_doc(sig_doc or {}))
        return new
