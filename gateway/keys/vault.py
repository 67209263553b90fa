"""The encrypted key store (``keystore.json``): broker keys and bot-credential secrets.

Layers, all AES-256-GCM from ``cryptography`` (no hand-rolled primitives):

- the **master key** (``master.py``) never encrypts data directly. Two subkeys are derived from
  it with HKDF-SHA256: a *wrapping key* and an *integrity key*;
- **data keys** (random 32 bytes each, versioned ``dk1, dk2 ...``) are stored wrapped under the
  wrapping key, with AAD ``gateway-keystore|datakey|v{n}`` binding each to its version;
- each **secret version** is encrypted under the current data key with a fresh random 96-bit
  nonce and AAD ``{name}|v{version}|dk{data_key_version}``, so a ciphertext cannot be moved to
  another name, version or data key;
- the whole document is authenticated with HMAC-SHA256 under the integrity key, so deleting,
  adding, swapping or reordering entries is detected, and the file must be byte-for-byte the
  canonical serialisation of what it holds, so *any* changed byte is refused.

File format (UTF-8 JSON, keys sorted, 2-space indent, written only by this module)::

    {
      "current_data_key": 2,
      "data_keys": {"2": {"created_at": "...", "nonce": "<b64>", "wrapped": "<b64>"}},
      "format": "gateway-keystore",
      "format_version": 1,
      "generation": 7,                      # bumped on every write (for humans / debugging)
      "mac": "<hex HMAC-SHA256 of the canonical compact JSON of everything else>",
      "secrets": {
        "broker/alpaca": [{"created_at": "...", "ct": "<b64>", "dk": 2, "nonce": "<b64>",
                           "version": 1}, ...]          # ascending by version
      }
    }

Writes go through ``write_private`` (temp file, fsync, rename) under an exclusive ``flock`` on a
sibling lock file, so a crash leaves either the old or the new file and two processes (the
running gateway and ``gatewayctl``) cannot lose each other's updates. Readers notice another
process's write with one ``stat`` per ``get`` and reload.

Not covered: rolling the whole file back to an older, validly authenticated copy (that needs
state outside the home); and Python cannot wipe key bytes from memory.
"""

from __future__ import annotations

import base64
import binascii
import copy
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..home import Home, write_private
from .master import KEY_BYTES, MasterKeyError, VaultError, load_master_key

__all__ = ["Vault", "VaultError", "MasterKeyError", "SecretNotFound"]

FORMAT = "gateway-keystore"
FORMAT_VERSION = 1
NONCE_BYTES = 12  # 96-bit GCM nonce, random per encryption
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}")

_UNREADABLE = "keystore cannot be decrypted: wrong master key or the file was modified"


class SecretNotFound(LookupError):
    """No secret (or no such version) under this name. The name is not secret; values are."""


# ---------------------------------------------------------------------------------------
# Helpers shared with clients.py: watching a file for other processes' writes, and locking.


def utc_iso(ts: float | None = None) -> str:
    ts = time.time() if ts is None else ts
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")


def parse_iso(text: str) -> float:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


class FileWatch:
    """Cheap change detection for a file another process replaces atomically.

    ``changed()`` costs one ``stat``: inode, size, mtime and ctime. Timestamps have coarse
    granularity, so (like git's "racily clean" index entries) a file modified within the last
    couple of seconds is also re-read and compared by content hash; after that window a
    change is always visible in the stat alone.
    """

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path):
        self.path = path
        self._sig: tuple[int, int, int, int] | None = None
        self._digest: bytes | None = None

    @staticmethod
    def _signature(st: os.stat_result) -> tuple[int, int, int, int]:
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def read(self) -> bytes:
        """Read the file and remember what was read. Raises FileNotFoundError."""
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
        self.remember(data, st)
        return data

    def remember(self, data: bytes, st: os.stat_result | None = None) -> None:
        if st is None:
            st = os.stat(self.path)
        self._sig = self._signature(st)
        self._digest = hashlib.sha256(data).digest()

    def forget(self) -> None:
        self._sig = None
        self._digest = None

    def changed(self) -> bool:
        """True when the file differs from what was last read (or vanished, or appeared)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._sig is not None
        if self._sig != self._signature(st):
            return True
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < self.RACY_NS:
            try:
                with open(self.path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return True
            return hashlib.sha256(data).digest() != self._digest
        return False


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``.{name}.lock`` next to ``path`` (cross-process)."""
    lock_path = path.with_name(f".{path.name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.b64decode(text, validate=True)


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def _canonical_compact(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _canonical_file(doc: dict) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def _datakey_aad(version: int) -> bytes:
    return f"gateway-keystore|datakey|v{version}".encode()


def _secret_aad(name: str, version: int, dk: int) -> bytes:
    return f"{name}|v{version}|dk{dk}".encode()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            "secret names are 1-200 characters from letters, digits and . _ : / @ - "
            "(starting with a letter or digit)"
        )
    return name


class Vault:
    """An open key store. Create one with ``Vault.create(home)`` or ``Vault.open(home)``."""

    def __init__(self, path: Path, master_key: bytes, *, _doc: dict, _raw: bytes):
        # Private: use create() / open().
        if len(master_key) != KEY_BYTES:
            raise MasterKeyError(f"a master key must be {KEY_BYTES} bytes")
        self.path = path
        self._wrap = AESGCM(_derive(master_key, b"gateway keystore: data key wrapping v1"))
        self._mac_key = _derive(master_key, b"gateway keystore: document integrity v1")
        self._subkey_root = _derive(master_key, b"gateway keystore: subkeys v1")
        self._lock = threading.RLock()
        self._watch = FileWatch(path)
        self._doc: dict = {}
        self._keys: dict[int, AESGCM] = {}
        self._install(_doc, _raw)

    def __repr__(self) -> str:
        return f"Vault({str(self.path)!r}, {len(self._doc.get('secrets', {}))} names)"

    # -- construction ------------------------------------------------------------------

    @classmethod
    def create(cls, home: Home, master_key: bytes | None = None) -> "Vault":
        """Create an empty key store with one data key. Refuses to overwrite an existing one."""
        path = home.keystore
        key = load_master_key(home) if master_key is None else master_key
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"a master key must be {KEY_BYTES} bytes")
        with exclusive_lock(path):
            if path.exists():
                raise VaultError(f"{path} already exists; refusing to overwrite a key store")
            wrap = AESGCM(_derive(key, b"gateway keystore: data key wrapping v1"))
            doc = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "generation": 1,
                "current_data_key": 1,
                "data_keys": {"1": cls._wrap_data_key(wrap, 1, AESGCM.generate_key(256))},
                "secrets": {},
            }
            raw = cls._serialize(doc, _derive(key, b"gateway keystore: document integrity v1"))
            write_private(path, raw)
        return cls(path, key, _doc=doc, _raw=raw)

    @classmethod
    def open(cls, home: Home, master_key: bytes | None = None) -> "Vault":
        """Open and verify an existing key store (wrong key or any modification: VaultError)."""
        path = home.keystore
        key = load_master_key(home) if master_key is None else master_key
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"no key store at {path} (create a home with `gatewayctl init`)") from None
        except OSError as exc:
            raise VaultError(f"cannot read key store {path}: {exc.strerror}") from None
        mac_key = _derive(key, b"gateway keystore: document integrity v1")
        doc = cls._verify(raw, mac_key, path)
        return cls(path, key, _doc=doc, _raw=raw)

    # -- serialisation and verification ------------------------------------------------

    @staticmethod
    def _wrap_data_key(wrap: AESGCM, version: int, key: bytes) -> dict:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return {
            "created_at": utc_iso(),
            "nonce": _b64(nonce),
            "wrapped": _b64(wrap.encrypt(nonce, key, _datakey_aad(version))),
        }

    @staticmethod
    def _serialize(doc: dict, mac_key: bytes) -> bytes:
        body = {k: v for k, v in doc.items() if k != "mac"}
        mac = hmac.new(mac_key, _canonical_compact(body), hashlib.sha256).hexdigest()
        return _canonical_file({**body, "mac": mac})

    @staticmethod
    def _verify(raw: bytes, mac_key: bytes, path: Path) -> dict:
        bad = VaultError(f"{_UNREADABLE} ({path})")
        try:
            doc = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise bad from None
        if not isinstance(doc, dict) or not isinstance(doc.get("mac"), str):
            raise bad
        body = {k: v for k, v in doc.items() if k != "mac"}
        expected = hmac.new(mac_key, _canonical_compact(body), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), doc["mac"].encode("ascii", "replace")):
            raise bad
        # Authentic, and also exactly as this module writes it: any other byte change is refused.
        if not hmac.compare_digest(_canonical_file(doc), raw):
            raise bad
        if doc.get("format") != FORMAT:
            raise VaultError(f"{path} is not a gateway key store")
        if doc.get("format_version") != FORMAT_VERSION:
            raise VaultError(
                f"{path} has key store format {doc.get('format_version')!r}; "
                f"this gateway reads format {FORMAT_VERSION}"
            )
        return doc

    def _install(self, doc: dict, raw: bytes) -> None:
        """Make ``doc`` (already verified) current: unwrap its data keys."""
        keys: dict[int, AESGCM] = {}
        try:
            for label, entry in doc["data_keys"].items():
                version = int(label)
                dk = self._wrap.decrypt(_unb64(entry["nonce"]), _unb64(entry["wrapped"]), _datakey_aad(version))
                if len(dk) != 32:
                    raise ValueError("bad data key length")
                keys[version] = AESGCM(dk)
            if int(doc["current_data_key"]) not in keys:
                raise ValueError("current data key missing")
            if not isinstance(doc["secrets"], dict):
                raise ValueError("bad secrets table")
        except (InvalidTag, KeyError, ValueError, TypeError, AttributeError, binascii.Error):
            raise VaultError(f"{_UNREADABLE} ({self.path})") from None
        self._doc = doc
        self._keys = keys
        self._watch.remember(raw)

    def _reload_if_changed(self) -> None:
        if not self._watch.changed():
            return
        try:
            raw = self._watch.path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"key store {self.path} has disappeared") from None
        self._install(self._verify(raw, self._mac_key, self.path), raw)

    def refresh(self) -> None:
        """Reload now if another process changed the file (``get`` does this itself)."""
        with self._lock:
            self._reload_if_changed()

    @contextmanager
    def _mutation(self) -> Iterator[dict]:
        """Lock, reload, hand out a copy of the document to change, then write it atomically."""
        with self._lock, exclusive_lock(self.path):
            self._reload_if_changed()
            doc = copy.deepcopy(self._doc)
            yield doc
            doc["generation"] = int(doc.get("generation", 0)) + 1
            raw = self._serialize(doc, self._mac_key)
            write_private(self.path, raw)
            self._install(doc, raw)

    # -- encryption of one secret version ----------------------------------------------

    def _encrypt(self, keys: dict[int, AESGCM], dk: int, name: str, version: int, secret: bytes) -> dict:
        nonce = secrets.token_bytes(NONCE_BYTES)
        ct = keys[dk].encrypt(nonce, secret, _secret_aad(name, version, dk))
        return {"created_at": utc_iso(), "ct": _b64(ct), "dk": dk, "nonce": _b64(nonce), "version": version}

    def _decrypt(self, keys: dict[int, AESGCM], name: str, entry: dict) -> bytes:
        try:
            dk = int(entry["dk"])
            version = int(entry["version"])
            return keys[dk].decrypt(_unb64(entry["nonce"]), _unb64(entry["ct"]), _secret_aad(name, version, dk))
        except (InvalidTag, KeyError, ValueError, TypeError, binascii.Error):
            raise VaultError(f"{_UNREADABLE} (entry {name!r} in {self.path})") from None

    # -- public API ----------------------------------------------------------------------

    def put(self, name: str, secret: bytes) -> int:
        """Store ``secret`` as a new version of ``name``; returns that version (1, 2, ...)."""
        _check_name(name)
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError("secret must be bytes")
        with self._mutation() as doc:
            versions = doc["secrets"].setdefault(name, [])
            version = max((int(v["version"]) for v in versions), default=0) + 1
            dk = int(doc["current_data_key"])
            versions.append(self._encrypt(self._keys, dk, name, version, bytes(secret)))
        return version

    def get(self, name: str) -> bytes:
        """The latest version of ``name``. Raises SecretNotFound."""
        with self._lock:
            self._reload_if_changed()
            versions = self._doc["secrets"].get(name)
            if not versions:
                raise SecretNotFound(f"no secret named {name!r} in the key store")
            return self._decrypt(self._keys, name, versions[-1])

    def get_version(self, name: str, version: int) -> bytes:
        """One specific version of ``name``. Raises SecretNotFound."""
        with self._lock:
            self._reload_if_changed()
            for entry in self._doc["secrets"].get(name, ()):
                if int(entry["version"]) == version:
                    return self._decrypt(self._keys, name, entry)
            raise SecretNotFound(f"no version {version} of {name!r} in the key store")

    def versions(self, name: str) -> list[dict]:
        """Metadata of every stored version of ``name`` (version, created_at), oldest first."""
        with self._lock:
            self._reload_if_changed()
            return [
                {"version": int(e["version"]), "created_at": e["created_at"]}
                for e in self._doc["secrets"].get(name, ())
            ]

    def latest_version(self, name: str) -> int | None:
        with self._lock:
            self._reload_if_changed()
            versions = self._doc["secrets"].get(name)
            return int(versions[-1]["version"]) if versions else None

    def names(self) -> list[str]:
        with self._lock:
            self._reload_if_changed()
            return sorted(self._doc["secrets"])

    def __contains__(self, name: object) -> bool:
        with self._lock:
            self._reload_if_changed()
            return name in self._doc["secrets"]

    def delete(self, name: str) -> None:
        """Remove every version of ``name``. Raises SecretNotFound when absent."""
        with self._mutation() as doc:
            if name not in doc["secrets"]:
                raise SecretNotFound(f"no secret named {name!r} in the key store")
            del doc["secrets"][name]

    def delete_many(self, names: list[str]) -> int:
        """Remove several names in one write; absent names are skipped. Returns how many went."""
        with self._mutation() as doc:
            gone = [n for n in names if n in doc["secrets"]]
            for n in gone:
                del doc["secrets"][n]
        return len(gone)

    @property
    def data_key_version(self) -> int:
        with self._lock:
            self._reload_if_changed()
            return int(self._doc["current_data_key"])

    def rotate_data_key(self) -> int:
        """New data key; every secret version is re-encrypted under it (fresh nonces), then the
        old data keys are dropped. One atomic file replace: a crash leaves the old or the new
        store, never a mix. Returns the new data-key version."""
        with self._mutation() as doc:
            new_version = max(self._keys) + 1
            new_key = AESGCM.generate_key(256)
            keys = {**self._keys, new_version: AESGCM(new_key)}
            for name, entries in doc["secrets"].items():
                for i, entry in enumerate(entries):
                    plain = self._decrypt(self._keys, name, entry)
                    fresh = self._encrypt(keys, new_version, name, int(entry["version"]), plain)
                    fresh["created_at"] = entry["created_at"]
                    entries[i] = fresh
            doc["data_keys"] = {str(new_version): self._wrap_data_key(self._wrap, new_version, new_key)}
            doc["current_data_key"] = new_version
        return new_version

    def subkey(self, purpose: str) -> bytes:
        """A 32-byte key derived from the master key for ``purpose`` (HKDF-SHA256), e.g. to
        authenticate another file of the home. Distinct purposes give independent keys."""
        if not purpose:
            raise ValueError("purpose must be non-empty")
        return _derive(self._subkey_root, b"gateway subkey: " + purpose.encode())


def open_or_create(home: Home, master_key: bytes | None = None) -> Vault:
    """Open the home's key store, creating an empty one when there is none yet."""
    if home.keystore.exists():
        return Vault.open(home, master_key)
    try:
        return Vault.create(home, master_key)
    except VaultError:
        if home.keystore.exists():  # another process created it meanwhile
            return Vault.open(home, master_key)
        raise
