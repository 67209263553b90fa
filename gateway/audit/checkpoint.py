"""Signed checkpoints: anchors that make a truncated or rewritten log tail detectable.

A hash chain alone proves that the records present fit together; it cannot prove that none were cut
off the end, nor that the whole tail was not recomputed by someone with write access. A checkpoint
signs "record ``seq`` has hash ``hash``" with an Ed25519 key that only the gateway holds
(``Home.audit_signing_key``, PEM, 0600). ``verify_log`` then requires that every checkpointed
``seq`` still exists with that hash.

One line of ``checkpoints.jsonl``::

    {"hash":"<64 hex>","key_id":"<16 hex>","seq":1000,"sig":"<128 hex>","ts":"2025-...Z"}

- ``sig`` is the hex Ed25519 signature over the domain-separated message
  ``b"gateway-audit-checkpoint-v1\\n" + str(seq) + b"\\n" + hash + b"\\n" + ts`` (ASCII), so a
  checkpoint signature can never be replayed as any other signed object.
- ``key_id`` is the first 16 hex chars of sha256 over the raw 32-byte public key.

Limits: checkpoints live next to the log; someone who can delete both the log tail and the later
checkpoint lines, or swap the key, defeats them. Copy checkpoints (or just the latest one) off the
box to close that gap; they hold no secrets.

Public surface: ``load_or_create_checkpoint_key``, ``load_public_key``, ``key_id``,
``Checkpoint``, ``sign_checkpoint``, ``verify_checkpoint``, ``append_checkpoint``,
``iter_checkpoints``, ``last_checkpoint``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ..home import fsync_dir, write_private
from ..model import utcnow
from .records import AuditCorrupt, format_ts, read_tail

DOMAIN = b"gateway-audit-checkpoint-v1\n"
_CHECKPOINT_KEYS = frozenset({"seq", "hash", "ts", "key_id", "sig"})


def load_or_create_checkpoint_key(path: Path) -> Ed25519PrivateKey:
    """Load the Ed25519 checkpoint key (PEM/PKCS#8), creating it owner-only (0600) if absent."""
    path = Path(path)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key from a PEM file holding either the private or the public key."""
    pem = Path(path).read_bytes()
    if b"PRIVATE KEY" in pem:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return key.public_key()
    pub = serialization.load_pem_public_key(pem)
    if not isinstance(pub, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 key")
    return pub


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_message(seq: int, hash: str, ts: str) -> bytes:
    return DOMAIN + f"{seq}\n{hash}\n{ts}".encode("ascii")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    ts: str
    key_id: str
    sig: str

    def to_line(self) -> bytes:
        return (
            orjson.dumps(
                {
                    "seq": self.seq,
                    "hash": self.hash,
                    "ts": self.ts,
                    "key_id": self.key_id,
                    "sig": self.sig,
                },
                option=orjson.OPT_SORT_KEYS,
            )
            + b"\n"
        )

    @classmethod
    def from_line(cls, line: bytes) -> Checkpoint:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AuditCorrupt("checkpoint line is not valid JSON") from None
        if not isinstance(obj, dict) or obj.keys() != _CHECKPOINT_KEYS:
            raise AuditCorrupt(
                "checkpoint does not have exactly the fields seq, hash, ts, key_id, sig"
            )
        seq = obj["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise AuditCorrupt("checkpoint seq is not a positive integer")
        if not all(isinstance(obj[k], str) for k in ("hash", "ts", "key_id", "sig")):
            raise AuditCorrupt("checkpoint fields have the wrong types", seq)
        return cls(seq, obj["hash"], obj["ts"], obj["key_id"], obj["sig"])


def sign_checkpoint(
    key: Ed25519PrivateKey, seq: int, hash: str, ts: str | None = None
) -> Checkpoint:
    ts = ts or format_ts(utcnow())
    sig = key.sign(checkpoint_message(seq, hash, ts)).hex()
    return Checkpoint(seq, hash, ts, key_id(key), sig)


def verify_checkpoint(cp: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """True iff ``cp`` was signed by ``public_key`` (key id and signature both match)."""
    if cp.key_id != key_id(public_key):
        return False
    try:
        sig = bytes.fromhex(cp.sig)
        msg = checkpoint_message(cp.seq, cp.hash, cp.ts)
    except (ValueError, UnicodeEncodeError):
        return False
    try:
        public_key.verify(sig, msg)
    except InvalidSignature:
        return False
    return True


def append_checkpoint(
    path: Path, cp: Checkpoint, *, sync: Callable[[int], None] | None = None
) -> None:
    """Append one checkpoint line durably (flock, drop a torn final line, write, fdatasync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        tail = read_tail(fd)
        if tail.torn:  # a crash mid-write left half a line; it was never acknowledged
            os.ftruncate(fd, tail.end)
        data = cp.to_line()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        (sync or _datasync)(fd)
    finally:
        os.close(fd)  # releases the lock
    if created:
        fsync_dir(path.parent)


def iter_checkpoints(path: Path) -> Iterator[Checkpoint]:
    """Every complete checkpoint line in order; an unterminated final line is skipped."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return
            yield Checkpoint.from_line(line)


def last_checkpoint(path: Path) -> Checkpoint | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        tail = read_tail(fd)
    finally:
        os.close(fd)
    return Checkpoint.from_line(tail.last_line) if tail.last_line else None


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)

