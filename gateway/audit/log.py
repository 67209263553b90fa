"""The tamper-evident audit log: append-only, hash-chained, durable before acknowledged.

Public surface
--------------
- ``AuditLog(path, *, max_batch=512, on_failure=None, now=utcnow, checkpoint_key=None,
  checkpoint_path=None, checkpoint_every=1000, checkpoint_interval_s=60.0, write_timeout_s=10.0,
  sync=None)``
    - ``await start() -> str | None``: open (creating the file 0600), take the chain's tail, drop a
      torn final line; returns a note (also ``recovery_note``) when it had to repair something.
    - ``await append(type, data) -> AuditRecord``: returns once the record is on disk (written and
      ``fdatasync``-ed). ``submit(type, data) -> Future`` is the same but enqueues synchronously,
      for callers that must fix the record's position in the log inside a synchronous step.
    - ``await checkpoint() -> Checkpoint | None``: sign the latest durable record now.
    - ``await close()``: flush what is queued, write a final checkpoint, close.
    - ``seq``, ``last_hash``, ``broken``, ``batches_written``, ``recovery_note``.
- ``append_sync(path, type, data, *, now=utcnow) -> AuditRecord``: one durable append from a
  short-lived process (``gatewayctl lockdown``), safe while a gateway has the log open.
- ``checkpoint_sync(log_path, checkpoints_path, key) -> Checkpoint | None``: the same for checkpoints.
- ``AuditUnavailable``: every failure to record. Re-exported: ``AuditRecord``, ``AuditCorrupt``.
- Verification, export and queries live in ``gateway.audit.verify``; the line format and its
  canonicalisation are documented in ``gateway.audit.records``; checkpoints in ``.checkpoint``.

How a write happens (group commit)
----------------------------------
``append`` validates ``data`` (see ``records.normalise_data``: plain JSON, no secret-named keys),
stamps ``ts`` and puts the record on a queue, in call order. One writer task takes everything
queued (at most ``max_batch``) and, in a worker thread so the event loop never blocks:
takes ``flock(LOCK_EX)`` on the file; if the file is not the size this process left it at, another
process (the CLI) has appended, so it re-reads the tail to continue that chain; assigns ``seq`` and
``prev`` in queue order and hashes; writes the whole batch with one ``write``; ``fdatasync``-s once;
unlocks. Only then are the batch's futures resolved. So a record is acknowledged only once durable,
the log's order is the order of the ``append`` calls, and N concurrent appends cost about one fsync.

An append whose caller is cancelled after it was queued is still written: a decision that was
taken stays recorded.

Crashes and failures
--------------------
- A crash mid-write can leave a final line without its newline. Such a line was never acknowledged
  (acks follow fsync), so ``start`` (or any later writer, under the lock) truncates it away and
  appends an ``audit.tail_repaired`` record saying so. Complete lines written before a crash stay,
  even if their appends were never acknowledged: the log may hold a record whose caller saw an
  error, never the reverse.
- If a write, fsync or checkpoint fails, or one batch (lock + write + fsync) takes longer than
  ``write_timeout_s`` (a stalled disk, or another process sitting on the lock), every queued and
  in-flight append fails with ``AuditUnavailable``, ``on_failure(exc)`` is called once, and every
  later append is refused until the process restarts: the gateway locks down rather than trade
  unrecorded. The writer tries to cut the file back to the last acknowledged record so a failed
  batch does not linger half-written (a stalled batch that completes later does stay: see above).
- The lock is a blocking ``flock`` (the kernel queues waiters, so a busy CLI cannot starve the
  gateway); the watchdog, not the lock call, enforces ``write_timeout_s``.
- ``start`` refuses (``AuditCorrupt``) a log whose last line is not a valid record, or which ends
  before the last signed checkpoint (truncation): extending a broken chain would hide the break.
- Tests inject failures with ``sync=`` (the fsync function), or point the log at ``/dev/full``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import TradingHalted
from ..home import fsync_dir
from ..model import utcnow
from .checkpoint import Checkpoint, append_checkpoint, last_checkpoint, sign_checkpoint
from .records import (
    GENESIS,
    AuditCorrupt,
    AuditRecord,
    encode_record,
    format_ts,
    normalise_data,
    parse_line,
    read_tail,
)

__all__ = [
    "REPAIR_TYPE",
    "AuditCorrupt",
    "AuditLog",
    "AuditRecord",
    "AuditUnavailable",
    "append_sync",
    "checkpoint_sync",
]

log = logging.getLogger(__name__)

REPAIR_TYPE = "audit.tail_repaired"
_STALL_HINT = "the disk stalled, or another process holds the audit log lock"
_MAX_TYPE_LEN = 128


class AuditUnavailable(TradingHalted):
    """The audit log cannot record, so nothing may be forwarded.

    A ``TradingHalted`` with code ``audit_unavailable``: dialects render it like any halt.
    """

    def __init__(self, message: str, code: str = "audit_unavailable"):
        super().__init__(message, code)


@dataclass(slots=True)
class _Pending:
    ts: str
    type: str
    data: dict[str, Any]
    future: asyncio.Future | None


def _default_sync(fd: int) -> None:
    # Looked up at call time so a test may monkeypatch os.fdatasync.
    getattr(os, "fdatasync", os.fsync)(fd)


def _check_type(type: str) -> None:
    if (
        not isinstance(type, str)
        or not type
        or len(type) > _MAX_TYPE_LEN
        or not type.isprintable()
    ):
        raise ValueError("audit record type must be a short printable string")


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 512,
        on_failure: Callable[[BaseException], None] | None = None,
        now: Callable[[], datetime] = utcnow,
        checkpoint_key: Ed25519PrivateKey | None = None,
        checkpoint_path: Path | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        write_timeout_s: float | None = 10.0,
        sync: Callable[[int], None] | None = None,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if (checkpoint_key is None) != (checkpoint_path is None):
            raise ValueError("checkpoint_key and checkpoint_path go together")
        self.path = Path(path)
        self.max_batch = max_batch
        self._on_failure = on_failure
        self._now = now
        self._cp_key = checkpoint_key
        self._cp_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self._cp_every = max(1, checkpoint_every)
        self._cp_interval = checkpoint_interval_s
        self._write_timeout = write_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._busy: concurrent.futures.Future | None = (
            None  # the worker-thread call in progress
        )
        self._sync = sync or _default_sync

        self._fd: int | None = None
        # The chain as this process last left it (touched only by the writer).
        self._seq = 0
        self._hash = GENESIS
        self._size = 0

        self._queue: collections.deque[_Pending] = collections.deque()
        self._inflight: list[_Pending] = []
        self._enqueued = 0
        self._written = 0
        self._cp_waiters: list[tuple[int, asyncio.Future]] = []
        self._last_cp_seq = 0
        self._last_cp_time = 0.0
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task | None = None
        self._state = "new"  # new | open | closing | closed
        self._broken: AuditUnavailable | None = None
        self.batches_written = 0
        self.recovery_note: str | None = None

    # ------------------------------------------------------------------ properties

    @property
    def seq(self) -> int:
        """Seq of the last record this process knows to be durable."""
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._hash

    @property
    def broken(self) -> bool:
        return self._broken is not None

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._inflight)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> str | None:
        if self._state != "new":
            raise RuntimeError("AuditLog.start() called twice")
        self._wake = asyncio.Event()
        # One dedicated thread: audit I/O never queues behind other users of the default executor.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="audit-writer"
        )
        cf = self._executor.submit(self._open)
        try:
            fd, note = await asyncio.wait_for(
                asyncio.wrap_future(cf), self._write_timeout
            )
        except TimeoutError:
            cf.add_done_callback(
                lambda f: None if f.exception() else os.close(f.result()[0])
            )
            self._executor.shutdown(wait=False)
            raise AuditUnavailable(
                f"could not open the audit log within {self._write_timeout}s: {_STALL_HINT}"
            ) from None
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._fd = fd
        self.recovery_note = note
        self._last_cp_time = time.monotonic()
        self._state = "open"
        self._writer = asyncio.create_task(
            self._run(), name=f"audit-writer:{self.path.name}"
        )
        if note:
            log.warning("audit log %s: %s", self.path, note)
        return note

    async def close(self) -> None:
        """Flush what is queued (unless broken), write a final checkpoint, release the file."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closing"
        assert self._wake is not None and self._writer is not None
        self._wake.set()
        if self._broken is not None and not self._writer.done():
            self._writer.cancel()  # it may be waiting on a stalled thread; do not wait with it
        try:
            await self._writer
        except asyncio.CancelledError:
            if not self._writer.cancelled():
                raise  # close() itself was cancelled
        except BaseException:  # already reported through _fail
            pass
        fd, self._fd = self._fd, None
        busy = self._busy
        if fd is not None:
            if busy is not None and not busy.done():
                # a stalled write still runs in its thread: close the fd only once it returns
                busy.add_done_callback(lambda _: os.close(fd))
            else:
                os.close(fd)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._state = "closed"

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking I/O on the writer thread; a watchdog fails the log if it stalls."""
        assert self._executor is not None
        cf = self._executor.submit(fn, *args)
        self._busy = cf
        watchdog = None
        if self._write_timeout is not None:
            watchdog = asyncio.get_running_loop().call_later(
                self._write_timeout, self._stalled
            )
        try:
            return await asyncio.wrap_future(cf)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _stalled(self) -> None:
        self._fail(
            AuditUnavailable(
                f"audit write did not complete within {self._write_timeout}s: {_STALL_HINT}"
            )
        )

    async def __aenter__(self) -> AuditLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ appending

    def submit(self, type: str, data: Mapping[str, Any]) -> asyncio.Future:
        """Queue a record now (its place in the log is fixed by this call); await the result."""
        if self._broken is not None:
            raise AuditUnavailable(str(self._broken)) from self._broken.__cause__
        if self._state != "open":
            raise AuditUnavailable("audit log is not open")
        _check_type(type)
        plain = normalise_data(data)
        ts = format_ts(self._now())
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(ts, type, plain, fut))
        self._enqueued += 1
        assert self._wake is not None
        self._wake.set()
        return fut

    async def append(self, type: str, data: Mapping[str, Any]) -> AuditRecord:
        """Append a record; returns once it is durable. Raises AuditUnavailable or ValueError."""
        return await self.submit(type, data)

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the latest record once everything queued before this call is durable.

        None when the log is still empty.
        """
        if self._cp_key is None:
            raise RuntimeError("no checkpoint key configured")
        if self._broken is not None:
            raise AuditUnavailable(str(self._broken)) from self._broken.__cause__
        if self._state != "open":
            raise AuditUnavailable("audit log is not open")
        fut = asyncio.get_running_loop().create_future()
        self._cp_waiters.append((self._enqueued, fut))
        assert self._wake is not None
        self._wake.set()
        return await fut

    # ------------------------------------------------------------------ writer task

    async def _run(self) -> None:
        assert self._wake is not None
        try:
            while True:
                self._wake.clear()
                if self._queue:
                    n = min(len(self._queue), self.max_batch)
                    batch = self._inflight = [self._queue.popleft() for _ in range(n)]
                    records = await self._offload(self._write_batch, batch)
                    if (
                        self._broken is not None
                    ):  # the watchdog gave up on this batch meanwhile
                        return
                    self._inflight = []
                    self._written += len(batch)
                    self.batches_written += 1
                    for p, rec in zip(batch, records):
                        if p.future is not None and not p.future.done():
                            p.future.set_result(rec)
                if self._checkpoint_due():
                    cp = await self._offload(self._write_checkpoint)
                    if self._broken is not None:
                        return
                    self._resolve_cp_waiters(cp)
                if self._queue:
                    continue
                if self._state == "closing":
                    return
                timeout = self._checkpoint_timeout()
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            self._fail(AuditUnavailable("audit writer was cancelled"), report=False)
            raise
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException, *, report: bool = True) -> None:
        if self._broken is not None:
            return
        if isinstance(exc, AuditUnavailable):
            err = exc
        else:
            err = AuditUnavailable(f"audit log unavailable: {_describe(exc)}")
            err.__cause__ = exc
        self._broken = err
        doomed = self._inflight + list(self._queue)
        self._inflight = []
        self._queue.clear()
        for p in doomed:
            if p.future is not None and not p.future.done():
                p.future.set_exception(AuditUnavailable(str(err)))
        for _, fut in self._cp_waiters:
            if not fut.done():
                fut.set_exception(AuditUnavailable(str(err)))
        self._cp_waiters.clear()
        log.log(
            logging.ERROR if report else logging.INFO,
            "audit log %s failed; refusing further appends: %s",
            self.path,
            err,
        )
        if report and self._on_failure is not None:
            try:
                self._on_failure(exc)
            except Exception:
                log.exception("audit on_failure callback raised")

    # ------------------------------------------------------------------ checkpoint scheduling

    def _checkpoint_due(self) -> bool:
        if self._cp_key is None:
            return False
        if any(target <= self._written for target, _ in self._cp_waiters):
            return True
        if self._seq <= self._last_cp_seq:
            return False
        if self._state == "closing" and not self._queue:
            return True
        if self._seq - self._last_cp_seq >= self._cp_every:
            return True
        return time.monotonic() - self._last_cp_time >= self._cp_interval

    def _checkpoint_timeout(self) -> float | None:
        if self._cp_key is None or self._seq <= self._last_cp_seq:
            return None
        return max(0.0, self._last_cp_time + self._cp_interval - time.monotonic())

    def _resolve_cp_waiters(self, cp: Checkpoint | None) -> None:
        keep = []
        for target, fut in self._cp_waiters:
            if target <= self._written:
                if not fut.done():
                    fut.set_result(cp)
            else:
                keep.append((target, fut))
        self._cp_waiters = keep

    # ------------------------------------------------------------------ worker-thread side

    def _open(self) -> tuple[int, str | None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = not self.path.exists()
        fd = os.open(
            self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                torn, after = self._resync(fd)
                if torn:
                    self._write_entries(fd, [self._repair_entry(torn, after)])
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if self._cp_path is not None:
                self._check_against_checkpoint()
        except BaseException:
            os.close(fd)
            raise
        if created:
            fsync_dir(self.path.parent)
        if torn:
            return fd, (
                f"dropped a torn final line ({torn} bytes) after seq {after}: a write cut short by a "
                "crash, never acknowledged; recorded as " + REPAIR_TYPE
            )
        return fd, None

    def _check_against_checkpoint(self) -> None:
        assert self._cp_path is not None
        cp = last_checkpoint(self._cp_path)
        if cp is None:
            return
        if cp.seq > self._seq or (cp.seq == self._seq and cp.hash != self._hash):
            raise AuditCorrupt(
                f"audit log ends at seq {self._seq} but checkpoint {cp.seq} was signed: the log was "
                "truncated or rewritten; run `gatewayctl audit verify`",
                cp.seq,
            )
        self._last_cp_seq = cp.seq

    def _resync(self, fd: int) -> tuple[int, int]:
        """Under the lock: take the chain's tail from the file, dropping a torn final line."""
        tail = read_tail(fd)
        if tail.torn:
            os.ftruncate(fd, tail.end)
            self._sync(fd)
        if tail.last_line is None:
            seq, digest = 0, GENESIS
        else:
            try:
                rec = parse_line(tail.last_line)
            except AuditCorrupt as exc:
                raise AuditCorrupt(
                    f"the last line of {self.path} is not a valid record ({exc}); refusing to extend it",
                    exc.seq,
                ) from None
            seq, digest = rec.seq, rec.hash
        self._seq, self._hash, self._size = seq, digest, tail.end
        return tail.torn, seq

    def _repair_entry(self, torn: int, after: int) -> _Pending:
        data = {"torn_bytes": torn, "after_seq": after, "pid": os.getpid()}
        return _Pending(format_ts(self._now()), REPAIR_TYPE, data, None)

    def _write_batch(self, entries: list[_Pending]) -> list[AuditRecord]:
        fd = self._fd
        assert fd is not None
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking: the kernel queues waiters fairly
        try:
            size = os.fstat(fd).st_size
            extra: list[_Pending] = []
            if size != self._size:
                if size < self._size:
                    raise AuditCorrupt(
                        f"{self.path} shrank from {self._size} to {size} bytes while open: "
                        "something truncated the audit log"
                    )
                torn, after = self._resync(fd)  # another process appended
                if torn:
                    extra.append(self._repair_entry(torn, after))
            records = self._write_entries(fd, extra + entries)
            return records[len(extra) :]
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_entries(self, fd: int, entries: list[_Pending]) -> list[AuditRecord]:
        """Under the lock: chain, write and sync ``entries``; on failure cut back what was written."""
        seq, prev = self._seq, self._hash
        records = []
        for p in entries:
            seq += 1
            rec = encode_record(seq, p.ts, p.type, p.data, prev)
            prev = rec.hash
            records.append(rec)
        buf = b"".join(r.line for r in records)
        try:
            _write_all(fd, buf)
            self._sync(fd)
        except BaseException:
            try:  # best effort: leave no half-written, unacknowledged batch behind
                os.ftruncate(fd, self._size)
            except OSError:
                pass
            raise
        self._seq, self._hash, self._size = seq, prev, self._size + len(buf)
        return records

    def _write_checkpoint(self) -> Checkpoint | None:
        assert self._cp_key is not None and self._cp_path is not None
        if self._seq == 0:
            return None
        cp = sign_checkpoint(
            self._cp_key, self._seq, self._hash, format_ts(self._now())
        )
        append_checkpoint(self._cp_path, cp, sync=self._sync)
        self._last_cp_seq = cp.seq
        self._last_cp_time = time.monotonic()
        return cp


# ---------------------------------------------------------------------------------------
# One-shot appends for short-lived processes (the CLI)


def append_sync(
    path: Path,
    type: str,
    data: Mapping[str, Any],
    *,
    now: Callable[[], datetime] = utcnow,
) -> AuditRecord:
    """Append one record durably from outside the gateway; returns once it is fsync-ed.

    Takes the same ``flock`` as a running ``AuditLog``, so the two keep one chain. Blocks while a
    writer holds the lock (one batch: a write and an fsync); callers that must not wait on the disk
    (``lockdown``) should persist their own state first and audit second.
    """
    _check_type(type)
    plain = normalise_data(data)
    ts = format_ts(now())
    writer = AuditLog(path, now=now)
    path = writer.path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        torn, after = writer._resync(fd)
        entries = [writer._repair_entry(torn, after)] if torn else []
        entries.append(_Pending(ts, type, plain, None))
        record = writer._write_entries(fd, entries)[-1]
    finally:
        os.close(fd)  # releases the lock
    if created:
        fsync_dir(path.parent)
    return record


def checkpoint_sync(
    log_path: Path, checkpoints_path: Path, key: Ed25519PrivateKey
) -> Checkpoint | None:
    """Sign the log's current last record and append the checkpoint; None if the log is empty."""
    try:
        fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(
            fd, fcntl.LOCK_SH
        )  # no append is half-way through while we read the tail
        tail = read_tail(fd)
    finally:
        os.close(fd)
    if tail.last_line is None:
        return None
    rec = parse_line(tail.last_line)
    cp = sign_checkpoint(key, rec.seq, rec.hash)
    append_checkpoint(checkpoints_path, cp)
    return cp


# ---------------------------------------------------------------------------------------
# helpers


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write to the audit log")
        view = view[n:]



def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}" + (
            f" (errno {exc.errno})" if exc.errno else ""
        )
    return f"{type(exc).__name__}: {exc}"
