"""The audit record format: one hash-chained JSON object per line.

A line in ``audit.log`` looks like (wrapped here)::

    {"data":{...},"prev":"<64 hex>","seq":7,"ts":"2025-01-02T03:04:05.123456Z","type":"order.decision",
     "hash":"<64 hex>"}\\n

Canonicalisation (what is hashed)
---------------------------------
The *body* of a record is the object without ``"hash"``, serialised by ``orjson`` with
``OPT_SORT_KEYS`` and nothing else: compact (no spaces), keys sorted at every depth, UTF-8,
non-JSON values (``Decimal``, ...) turned into strings with ``str``. Because ``"data"`` < ``"prev"``
< ``"seq"`` < ``"ts"`` < ``"type"``, the body is ``{"data":...,"prev":...,"seq":...,"ts":...,"type":...}``.

``hash = sha256(body).hexdigest()``, and the stored line is the body with its final ``}`` replaced by
``,"hash":"<hex>"}`` plus ``\\n``. So a verifier needs no JSON canonicaliser of its own: drop the last
76 bytes of the line (``,"hash":"`` + 64 hex + ``"}`` + newline), append ``}``, hash those exact bytes.

- ``seq`` starts at 1 and grows by exactly 1 per line.
- ``prev`` is the previous line's ``hash``; the first record's ``prev`` is 64 zeros (``GENESIS``).
- ``ts`` is UTC, ISO-8601 with microseconds and a ``Z`` suffix (fixed width, so timestamps compare
  as strings). It is the time ``append`` was called, not the time of the write.
- ``data`` is normalised before hashing: it is serialised (``default=str``) and parsed back, so the
  record holds plain JSON (Decimal -> ``"1.50"``, enums -> their value, datetimes -> RFC 3339).

Secrets are never audited. The log cannot tell a secret value from any other string, so it refuses
the most common way one slips in: a ``data`` key (at any depth) that names a secret (``secret``,
``password``, ``passphrase``, ``token``, ``private_key``, ``master_key``, in any case or spelling
such as ``apiSecret`` or ``APCA-API-SECRET-KEY``). Records are permanent and leave the box with
every export, so a leaked key would be unrecallable; failing loudly in development is far cheaper.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64
_HASH_RE = re.compile(rb"^[0-9a-f]{64}$")
_HASH_PREFIX = b',"hash":"'
# ,"hash":" + 64 hex + "}
_SUFFIX_LEN = len(_HASH_PREFIX) + 64 + 2
_RECORD_KEYS = frozenset({"seq", "ts", "type", "data", "prev", "hash"})


class AuditCorrupt(ValueError):
    """A line of the log (or of the checkpoint file) is not a valid record."""

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One durable record. ``line`` is the exact bytes stored (with the trailing newline)."""

    seq: int
    ts: str
    type: str
    data: dict[str, Any]
    prev: str
    hash: str
    line: bytes = field(default=b"", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "type": self.type,
            "data": self.data,
            "prev": self.prev,
            "hash": self.hash,
        }

    def to_line(self) -> bytes:
        """The stored line, byte for byte (for export)."""
        return (
            self.line
            or encode_record(self.seq, self.ts, self.type, self.data, self.prev).line
        )


# ---------------------------------------------------------------------------------------
# Encoding


def format_ts(dt: datetime) -> str:
    """``2025-01-02T03:04:05.123456Z``; naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    else:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Plain-JSON copy of ``data``; raises ValueError if unserialisable or a key names a secret."""
    if not isinstance(data, Mapping):
        raise ValueError(f"audit data must be a mapping, not {type(data).__name__}")
    try:
        plain = orjson.loads(
            orjson.dumps(dict(data), default=str, option=orjson.OPT_SORT_KEYS)
        )
    except (TypeError, orjson.JSONEncodeError) as exc:
        # orjson's messages name the offending type or problem, never the value.
        raise ValueError(f"audit data is not serialisable: {exc}") from None
    check_no_secret_keys(plain)
    return plain


_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
# Refused when they appear anywhere in the key, once separators are removed.
_SECRET_SUBSTRINGS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "privatekey",
    "masterkey",
)
# Refused as whole words only ("auth_token", "accessToken"), so "tokens_remaining" stays usable.
_SECRET_WORDS = frozenset({"token"})


@functools.lru_cache(maxsize=4096)  # keys repeat from record to record
def is_secret_key(key: str) -> bool:
    lowered = _CAMEL.sub(r"\1_\2", key).lower()
    words = [w for w in _SPLIT.split(lowered) if w]
    joined = "".join(words)
    return any(s in joined for s in _SECRET_SUBSTRINGS) or any(
        w in _SECRET_WORDS for w in words
    )


def check_no_secret_keys(value: Any, path: str = "data") -> None:
    """Raise ValueError naming the first key (never its value) that looks like a secret."""
    if isinstance(value, dict):
        for k, v in value.items():
            if is_secret_key(k):
                raise ValueError(
                    f"refusing to audit {path}.{k}: the key names a secret; audit records are "
                    "permanent and exported, so callers must drop or redact secrets first"
                )
            check_no_secret_keys(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_no_secret_keys(v, f"{path}[{i}]")


def encode_record(
    seq: int, ts: str, type: str, data: dict[str, Any], prev: str
) -> AuditRecord:
    """Build the record and its line. ``data`` must already be normalised (plain JSON)."""
    body = orjson.dumps(
        {"data": data, "prev": prev, "seq": seq, "ts": ts, "type": type},
        option=orjson.OPT_SORT_KEYS,
    )
    digest = hashlib.sha256(body).hexdigest()
    line = b"".join((body[:-1], _HASH_PREFIX, digest.encode("ascii"), b'"}\n'))
    return AuditRecord(seq, ts, type, data, prev, digest, line)


# ---------------------------------------------------------------------------------------
# Decoding


def parse_line(line: bytes, *, check_hash: bool = True) -> AuditRecord:
    """Parse one stored line (with or without its newline); raise AuditCorrupt if it is not valid.

    With ``check_hash`` the stored hash must match the hashed bytes; chain links (``seq``/``prev``)
    are the caller's business.
    """
    raw = line[:-1] if line.endswith(b"\n") else line
    if len(raw) < _SUFFIX_LEN + 2 or not raw.endswith(b'"}'):
        raise AuditCorrupt("not a record line")
    suffix = raw[-_SUFFIX_LEN:]
    if not suffix.startswith(_HASH_PREFIX):
        raise AuditCorrupt('record does not end with its "hash" member')
    digest = suffix[len(_HASH_PREFIX) : -2]
    if not _HASH_RE.match(digest):
        raise AuditCorrupt("record hash is not 64 lowercase hex digits")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AuditCorrupt("record is not valid JSON") from None
    if not isinstance(obj, dict) or obj.keys() != _RECORD_KEYS:
        raise AuditCorrupt(
            "record does not have exactly the fields seq, ts, type, data, prev, hash"
        )
    seq, ts, typ, data, prev = (
        obj["seq"],
        obj["ts"],
        obj["type"],
        obj["data"],
        obj["prev"],
    )
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1):
        raise AuditCorrupt("record seq is not a positive integer")
    if (
        not isinstance(ts, str)
        or not isinstance(typ, str)
        or not isinstance(data, dict)
    ):
        raise AuditCorrupt("record ts/type/data have the wrong types", seq)
    if not isinstance(prev, str) or not _HASH_RE.match(prev.encode("ascii", "replace")):
        raise AuditCorrupt("record prev is not 64 lowercase hex digits", seq)
    if check_hash:
        body = raw[:-_SUFFIX_LEN] + b"}"
        if hashlib.sha256(body).hexdigest().encode("ascii") != digest:
            raise AuditCorrupt("record hash does not match its contents", seq)
    return AuditRecord(seq, ts, typ, data, prev, digest.decode("ascii"), raw + b"\n")


# ---------------------------------------------------------------------------------------
# Low-level file helpers (shared by the writer, checkpoints and verify)

_CHUNK = 64 * 1024


def rfind_newline(fd: int, before: int) -> int:
    """Offset of the last ``\\n`` strictly before ``before`` in the file, or -1."""
    pos = before
    while pos > 0:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


@dataclass(frozen=True, slots=True)
class Tail:
    """Where a line-oriented file ends: the last complete line and what follows it."""

    end: int  # offset just past the last complete line's newline (0 if none)
    last_line: bytes | None  # the last complete line, with its newline
    torn: int  # bytes after ``end`` (a line without its newline)


def read_tail(fd: int, size: int | None = None) -> Tail:
    if size is None:
        size = os.fstat(fd).st_size
    if size == 0:
        return Tail(0, None, 0)
    nl = rfind_newline(fd, size)
    end = nl + 1
    if end == 0:
        return Tail(0, None, size)
    start = rfind_newline(fd, nl) + 1
    return Tail(end, os.pread(fd, end - start, start), size - end)
