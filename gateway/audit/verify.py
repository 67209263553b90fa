"""Reading the audit log: verification, export/tail and queries. All streaming, constant memory.

Public surface
--------------
- ``verify_log(log_path, *, checkpoints_path=None, public_key=None) -> VerifyResult``
- ``VerifyResult(ok, records, last_seq, last_hash, error, error_seq, checkpoints)``
- ``iter_records(path, *, since_seq=None) -> Iterator[AuditRecord]`` (records with seq > since_seq)
- ``query(path, *, type=None, key_id=None, code=None, decision=None, since=None, until=None)
  -> Iterator[AuditRecord]``

What ``verify_log`` checks
--------------------------
Every line is a record whose hash matches its bytes (a changed byte anywhere fails), ``seq`` runs
1, 2, 3, ... with no gap or swap (a deleted or reordered record fails), each ``prev`` is the previous
record's hash (the first is 64 zeros), and the file ends with a newline (a torn final line, left by
a crash and removed by the next gateway start, fails). With ``checkpoints_path``: every checkpoint's
signature must verify under ``public_key`` (a forged or foreign checkpoint fails; checkpoints without
a key to check them fail closed), and every checkpointed seq must exist in the log with the
checkpointed hash, so a truncated tail, or a tail rewritten with a recomputed chain, fails.
A missing log file counts as empty: ok, unless a checkpoint says records existed. When a key to
check checkpoints is given and the log has records, at least one checkpoint must exist: a deleted
checkpoint file would otherwise let a rewritten, re-hashed log pass (``gatewayctl init`` signs the
first one). Records after the last checkpoint are not covered by any signature yet (the gateway
signs one every ~1000 records, every minute and at shutdown): ``VerifyResult.uncovered`` says how
many, so the operator knows how much of the tail rests on the hash chain alone.

The log is read up to its size at the start of the call (taken under a shared lock, so no write is
half-way through): records appended while verification runs are simply not covered.
Checkpoints (one per ~1000 records) are held in memory as a seq -> hash map; the log is streamed.

Conventions used by ``query``
-----------------------------
The log itself does not interpret ``data``. The gateway's records follow these conventions, which
``query`` (and ``gatewayctl audit query``) filter on:

- ``data["key_id"]``: the bot credential (key id, never its secret) the record is about;
- ``data["decision"]``: the risk decision, e.g. ``"allow"``, ``"reject"``, ``"clamp"``;
- ``data["codes"]``: list of stable violation codes (``"max_position_pct"``, ...).

Record types are dotted names (``order.decision``, ``order.result``, ``control.lockdown``, ...);
``type`` matches exactly, or as a prefix when it ends with ``.`` (``"order."``).
``since``/``until`` bound ``ts`` as ``since <= ts < until``; datetimes, or ISO-8601 strings.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .checkpoint import iter_checkpoints, verify_checkpoint
from .checkpoint import key_id as _key_id
from .records import GENESIS, AuditCorrupt, AuditRecord, format_ts, parse_line

__all__ = ["VerifyResult", "iter_records", "query", "verify_log"]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int  # records verified (before the first error, if any)
    last_seq: int  # seq of the last good record (0 if none)
    last_hash: str  # hash of the last good record (GENESIS if none)
    error: str | None = None
    error_seq: int | None = (
        None  # the seq at which the problem shows (the expected seq)
    )
    checkpoints: int = 0  # checkpoints whose signature and position were checked
    last_checkpoint_seq: int = 0  # the highest checkpointed seq (0 if none)
    uncovered: int = 0  # records after the last checkpoint: protected by the chain alone


def verify_log(
    log_path: Path,
    *,
    checkpoints_path: Path | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> VerifyResult:
    log_path = Path(log_path)
    anchors: dict[int, str] = {}
    n_checkpoints = 0

    def fail(
        msg: str,
        seq: int | None,
        records: int = 0,
        last_seq: int = 0,
        last_hash: str = GENESIS,
    ):
        return VerifyResult(
            False, records, last_seq, last_hash, msg, seq, n_checkpoints
        )

    # 1. checkpoints: signatures first, then remember seq -> hash
    if checkpoints_path is not None and Path(checkpoints_path).exists():
        try:
            for i, cp in enumerate(iter_checkpoints(Path(checkpoints_path)), 1):
                if public_key is None:
                    return fail(
                        "checkpoints present but no public key given to verify them",
                        cp.seq,
                    )
                if not verify_checkpoint(cp, public_key):
                    why = (
                        f"signed by key {cp.key_id}, expected {_key_id(public_key)}"
                        if cp.key_id != _key_id(public_key)
                        else "bad signature"
                    )
                    return fail(
                        f"checkpoint #{i} (seq {cp.seq}) does not verify: {why}", cp.seq
                    )
                if anchors.get(cp.seq, cp.hash) != cp.hash:
                    return fail(
                        f"two checkpoints for seq {cp.seq} disagree on its hash", cp.seq
                    )
                anchors[cp.seq] = cp.hash
                n_checkpoints += 1
        except AuditCorrupt as exc:
            return fail(f"checkpoint file: {exc}", exc.seq)

    # 2. the chain
    expected = 1
    prev = GENESIS
    records = 0
    try:
        f = open(log_path, "rb")
    except FileNotFoundError:
        f = None
    if f is not None:
        with f:
            size = _stable_size(f)
            for line, complete in _lines(f, size):
                if not complete:
                    return fail(
                        f"torn final line ({len(line)} bytes without a newline): a write cut short by a "
                        "crash (the gateway drops it on start) or tampering",
                        expected,
                        records,
                        expected - 1,
                        prev,
                    )
                try:
                    rec = parse_line(line)
                except AuditCorrupt as exc:
                    return fail(
                        f"record at line {expected}: {exc}",
                        expected,
                        records,
                        expected - 1,
                        prev,
                    )
                if rec.seq != expected:
                    what = (
                        "a record is missing or out of order"
                        if rec.seq > expected
                        else "a record is out of order or duplicated"
                    )
                    return fail(
                        f"seq {rec.seq} where {expected} was expected: {what}",
                        expected,
                        records,
                        expected - 1,
                        prev,
                    )
                if rec.prev != prev:
                    return fail(
                        f"record {rec.seq} does not link to the previous record (prev mismatch)",
                        expected,
                        records,
                        expected - 1,
                        prev,
                    )
                anchor = anchors.get(rec.seq)
                if anchor is not None and anchor != rec.hash:
                    return fail(
                        f"record {rec.seq} differs from its signed checkpoint: the log was rewritten",
                        rec.seq,
                        records,
                        expected - 1,
                        prev,
                    )
                prev = rec.hash
                records += 1
                expected += 1

    last_seq = expected - 1
    beyond = [s for s in anchors if s > last_seq]
    if beyond:
        top = max(beyond)
        return fail(
            f"log ends at seq {last_seq} but a checkpoint was signed at seq {top}: the log was truncated",
            last_seq + 1,
            records,
            last_seq,
            prev,
        )
    if public_key is not None and checkpoints_path is not None and records and not anchors:
        return fail(
            f"the log has {records} records and a checkpoint key exists, but there is no signed checkpoint: "
            f"{Path(checkpoints_path).name} was deleted or emptied, so a rewritten log could not be told apart",
            1,
            records,
            last_seq,
            prev,
        )
    covered = max(anchors, default=0)
    return VerifyResult(True, records, last_seq, prev, None, None, n_checkpoints, covered, last_seq - covered)


def iter_records(path: Path, *, since_seq: int | None = None) -> Iterator[AuditRecord]:
    """Records in file order, those with ``seq > since_seq`` when given (for export and tail).

    Reads up to the file's size when the call starts; an unterminated final line (a write in
    progress, or a crash) is not yielded. Hashes are checked, links are not (that is
    ``verify_log``'s job); an invalid line raises ``AuditCorrupt``. With ``since_seq`` the start is
    found by bisection over byte offsets, so tailing a large log does not read all of it.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        size = _stable_size(f)
        if since_seq:
            f.seek(_offset_after(f, size, since_seq))
        for line, complete in _lines(f, size):
            if not complete:
                return
            rec = parse_line(line)
            if since_seq is None or rec.seq > since_seq:
                yield rec


def query(
    path: Path,
    *,
    type: str | None = None,
    key_id: str | None = None,
    code: str | None = None,
    decision: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> Iterator[AuditRecord]:
    """Records matching every given filter (see the module docstring for the conventions)."""
    lo = _ts_bound(since)
    hi = _ts_bound(until)
    for rec in iter_records(path):
        if type is not None:
            if type.endswith("."):
                if not rec.type.startswith(type):
                    continue
            elif rec.type != type:
                continue
        if lo is not None and rec.ts < lo:
            continue
        if hi is not None and rec.ts >= hi:
            continue
        data = rec.data
        if key_id is not None and data.get("key_id") != key_id:
            continue
        if decision is not None and data.get("decision") != decision:
            continue
        if code is not None:
            codes = data.get("codes")
            if not isinstance(codes, list) or code not in codes:
                continue
        yield rec


# ---------------------------------------------------------------------------------------
# helpers


def _stable_size(f: IO[bytes]) -> int:
    """The file's size at a moment no writer holds the lock (so it ends on a write boundary)."""
    fd = f.fileno()
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        return os.fstat(fd).st_size
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _lines(f: IO[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """(line, ends_with_newline) up to byte ``size`` from the current position."""
    pos = f.tell()
    for line in f:
        pos += len(line)
        if pos >= size:
            if pos > size:
                line = line[: len(line) - (pos - size)]
            if line:
                yield line, line.endswith(b"\n")
            return
        yield line, True


def _seq_at(f: IO[bytes], offset: int, size: int) -> tuple[int, int] | None:
    """(start offset, seq) of the first complete line starting at or after ``offset``."""
    if offset > 0:
        f.seek(offset - 1)
        skipped = f.readline()  # finish the line containing offset-1
        offset = offset - 1 + len(skipped)
    else:
        f.seek(0)
    if offset >= size:
        return None
    line = f.readline()
    if not line.endswith(b"\n"):
        return None
    try:
        return offset, parse_line(line, check_hash=False).seq
    except AuditCorrupt:
        return None


def _offset_after(f: IO[bytes], size: int, since_seq: int) -> int:
    """A line-start offset at or before the first record with seq > since_seq (0 if unsure)."""
    lo, hi, best = 0, size, 0
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        found = _seq_at(f, mid, size)
        if found is None:
            hi = mid
            continue
        start, seq = found
        if seq <= since_seq:
            best = start
            lo = mid
        else:
            hi = mid
    return best


def _ts_bound(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_ts(value)
