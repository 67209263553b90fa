"""The audit writer: chaining, durability before ack, group commit, recovery, failure, secrets."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from gateway.audit.checkpoint import (
    iter_checkpoints,
    key_id,
    load_or_create_checkpoint_key,
    verify_checkpoint,
)
from gateway.audit.log import (
    REPAIR_TYPE,
    AuditCorrupt,
    AuditLog,
    AuditUnavailable,
    append_sync,
)
from gateway.audit.records import GENESIS
from gateway.audit.verify import iter_records, verify_log
from gateway.errors import TradingHalted

REPO = Path(__file__).resolve().parents[2]


def lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class SyncSpy:
    """A sync hook: really fdatasyncs, and remembers the file size each time (what is durable)."""

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.durable_size = 0
        self.fail_after = fail_after

    def __call__(self, fd: int) -> None:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise OSError(errno.EIO, "Input/output error")
        os.fdatasync(fd)
        self.calls += 1
        self.durable_size = os.fstat(fd).st_size


async def test_records_chain_and_hash_over_canonical_body(tmp_path):
    path = tmp_path / "audit" / "audit.log"
    async with AuditLog(path) as log:
        r1 = await log.append(
            "order.decision", {"qty": Decimal("1.50"), "symbol": "AAPL", "b": [1, 2]}
        )
        r2 = await log.append("order.result", {"status": "accepted"})
        r3 = await log.append("control.lockdown", {"reason": "test"})

    stored = lines(path)
    assert [r["seq"] for r in stored] == [1, 2, 3]
    assert stored[0]["prev"] == GENESIS
    assert (
        stored[1]["prev"] == stored[0]["hash"]
        and stored[2]["prev"] == stored[1]["hash"]
    )
    assert [r1.hash, r2.hash, r3.hash] == [r["hash"] for r in stored]
    assert stored[0]["data"] == {
        "b": [1, 2],
        "qty": "1.50",
        "symbol": "AAPL",
    }  # Decimal via str
    for rec in stored:  # hash = sha256 of the sorted-key orjson body without "hash"
        body = {k: v for k, v in rec.items() if k != "hash"}
        assert (
            hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
            == rec["hash"]
        )
        ts = datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert abs(ts.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    assert path.read_bytes() == r1.line + r2.line + r3.line
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_log(path).ok


async def test_append_returns_only_once_durable(tmp_path):
    spy = SyncSpy()
    async with AuditLog(tmp_path / "audit.log", sync=spy) as log:
        for i in range(20):
            await log.append("t", {"i": i})
            # everything in the file, including this record, had been fdatasync-ed before the ack
            assert spy.durable_size == (tmp_path / "audit.log").stat().st_size


async def test_concurrent_appends_group_commit(tmp_path):
    spy = SyncSpy()
    path = tmp_path / "audit.log"
    async with AuditLog(path, sync=spy, max_batch=512) as log:
        records = await asyncio.gather(
            *(log.append("order.decision", {"i": i}) for i in range(1000))
        )
        batches = log.batches_written
    # order of the log is the order of the calls; seq contiguous
    assert [r.seq for r in records] == list(range(1, 1001))
    assert [r.data["i"] for r in records] == list(range(1000))
    assert spy.durable_size == path.stat().st_size
    assert spy.calls == batches <= 10  # ~2 fsyncs for 1000 appends, not 1000
    result = verify_log(path)
    assert result.ok and result.records == 1000 and result.last_hash == records[-1].hash


async def test_submit_fixes_position_at_call_time(tmp_path):
    async with AuditLog(tmp_path / "audit.log") as log:
        futs = [log.submit("t", {"i": i}) for i in range(5)]
        late = asyncio.create_task(log.append("t", {"i": "late"}))
        early = log.submit("t", {"i": 5})  # called before the task above starts running
        recs = await asyncio.gather(*futs, early, late)
    assert [r.data["i"] for r in sorted(recs, key=lambda r: r.seq)] == [
        0,
        1,
        2,
        3,
        4,
        5,
        "late",
    ]


async def test_cancelled_append_is_still_recorded(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        task = asyncio.create_task(log.append("order.decision", {"i": 1}))
        # One loop iteration runs the new task up to its first await: the record is queued
        # (append enqueues synchronously) and the task waits for the disk. Not a timing guess.
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        rec = await log.append("t", {"i": 2})
    assert rec.seq == 2
    assert [r.data["i"] for r in iter_records(path)] == [1, 2]


async def test_restart_continues_the_chain(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        for i in range(5):
            last = await log.append("t", {"i": i})
    log2 = AuditLog(path)
    assert await log2.start() is None
    assert log2.seq == 5 and log2.last_hash == last.hash
    rec = await log2.append("t", {"i": 5})
    await log2.close()
    assert rec.seq == 6 and rec.prev == last.hash
    assert verify_log(path).records == 6


async def test_torn_tail_is_dropped_on_start_and_recorded(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        for i in range(3):
            await log.append("t", {"i": i})
    good = path.read_bytes()
    with open(path, "ab") as f:  # a crash half-way through writing record 4
        f.write(b'{"data":{"i":3},"prev":"ab12')
    assert not verify_log(path).ok

    log = AuditLog(path)
    note = await log.start()
    assert note and "torn" in note and "28 bytes" in note
    assert log.recovery_note == note
    rec = await log.append("t", {"i": "after"})
    await log.close()

    stored = list(iter_records(path))
    assert path.read_bytes().startswith(good)
    assert stored[3].type == REPAIR_TYPE and stored[3].data["torn_bytes"] == 28
    assert stored[3].data["after_seq"] == 3
    assert rec.seq == 5 and rec.prev == stored[3].hash
    assert verify_log(path).ok


async def test_torn_only_line_leaves_an_empty_chain(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b'{"data":{}')
    async with AuditLog(path) as log:
        rec = await log.append("t", {})
    assert (
        rec.seq == 2
        and lines(path)[0]["type"] == REPAIR_TYPE
        and lines(path)[0]["prev"] == GENESIS
    )
    assert verify_log(path).ok


async def test_start_refuses_a_corrupt_last_record(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        await log.append("t", {"v": "aaa"})
        await log.append("t", {"v": "bbb"})
    path.write_bytes(path.read_bytes().replace(b"bbb", b"bbc"))
    with pytest.raises(AuditCorrupt, match="not a valid record"):
        await AuditLog(path).start()


def _subprocess_appender(path: Path, n: int) -> list[str]:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from gateway.audit.log import append_sync\n"
        f"for i in range({n}):\n"
        "    append_sync(Path(sys.argv[1]), 'control.cli', {'i': i, 'pid_role': 'cli'})\n"
    )
    return [sys.executable, "-c", code, str(path)]


async def test_append_sync_from_another_process_keeps_one_chain(tmp_path):
    path = tmp_path / "audit.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    async with AuditLog(path) as log:
        await log.append("t", {"i": -1})
        procs = [
            await asyncio.create_subprocess_exec(
                *_subprocess_appender(path, 40), env=env
            )
            for _ in range(2)
        ]
        mine = []
        deadline = asyncio.get_running_loop().time() + 60
        while any(p.returncode is None for p in procs) or len(mine) < 300:
            assert asyncio.get_running_loop().time() < deadline, "the appenders never finished"
            mine += await asyncio.gather(
                *(log.append("t", {"i": len(mine) + k}) for k in range(10))
            )
            await asyncio.sleep(0.001)  # pacing, so the other processes get the lock between batches
        assert [await p.wait() for p in procs] == [0, 0]
        tail = await log.append("t", {"i": "tail"})
        # the CLI's appends are done; one more from "lockdown" while the log is open
        cli = append_sync(path, "control.lockdown", {"reason": "operator"})
        after = await log.append("t", {"i": "after"})

    result = verify_log(path)
    assert result.ok, result
    stored = list(iter_records(path))
    assert result.records == len(stored) == 1 + len(mine) + 80 + 3
    assert sum(r.type == "control.cli" for r in stored) == 80
    by_seq = {r.seq: r for r in stored}
    for rec in mine + [
        tail,
        cli,
        after,
    ]:  # what each writer was told is exactly what is stored
        assert by_seq[rec.seq].hash == rec.hash
    assert cli.seq == tail.seq + 1 and after.seq == cli.seq + 1
    # interleaving actually happened: some CLI record sits between two gateway records
    seqs_cli = [r.seq for r in stored if r.type == "control.cli"]
    assert any(seqs_cli[0] < r.seq < seqs_cli[-1] for r in mine)


def test_append_sync_alone(tmp_path):
    path = tmp_path / "new" / "audit.log"
    r1 = append_sync(
        path,
        "control.lockdown",
        {"reason": "x", "at": datetime(2025, 1, 1, tzinfo=UTC)},
    )
    r2 = append_sync(path, "control.unlock", {"reason": "y"})
    assert (r1.seq, r2.seq, r2.prev) == (1, 2, r1.hash)
    assert r1.data["at"] == "2025-01-01T00:00:00+00:00"
    assert verify_log(path).ok


async def test_write_failure_fails_pending_calls_hook_once_and_refuses_more(tmp_path):
    path = tmp_path / "audit.log"
    failures: list[BaseException] = []
    spy = SyncSpy()
    log = AuditLog(path, sync=spy, on_failure=failures.append)
    await log.start()
    ok = await log.append("t", {"i": 0})
    spy.fail_after = spy.calls  # the disk now fails every fsync
    results = await asyncio.gather(
        *(log.append("t", {"i": i}) for i in range(1, 50)), return_exceptions=True
    )
    assert all(isinstance(r, AuditUnavailable) for r in results)
    assert (
        isinstance(results[0], TradingHalted) and results[0].code == "audit_unavailable"
    )
    assert "errno 5" in str(results[0])
    assert len(failures) == 1 and isinstance(failures[0], OSError)
    assert log.broken
    with pytest.raises(AuditUnavailable):
        await log.append("t", {"i": 99})
    spy.fail_after = (
        None  # even a healthy disk does not revive it: broken until restart
    )
    with pytest.raises(AuditUnavailable):
        await log.append("t", {"i": 100})
    await log.close()
    assert len(failures) == 1
    # the failed batch was cut back: the file holds exactly the acknowledged record
    result = verify_log(path)
    assert result.ok and result.records == 1 and result.last_hash == ok.hash


async def test_a_stuck_lock_holder_fails_the_log_within_the_timeout(tmp_path):
    path = tmp_path / "audit.log"
    failures: list[BaseException] = []
    # Long enough for an ordinary append on a loaded machine; the held lock outlasts it anyway.
    log = AuditLog(path, write_timeout_s=1.0, on_failure=failures.append)
    await log.start()
    await log.append("t", {"i": 0})
    with open(path, "rb") as holder:  # a hung process sits on the lock
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(AuditUnavailable, match="did not complete within"):
            await log.append("t", {"i": 1})
        assert len(failures) == 1 and log.broken
        await log.close()  # does not close the fd under the still-blocked worker thread
    # The lock is released: the late write lands (its caller was told it failed).
    deadline = asyncio.get_running_loop().time() + 10
    while (result := verify_log(path)).records < 2:
        assert asyncio.get_running_loop().time() < deadline, "the stalled write never landed"
        await asyncio.sleep(0.01)
    assert result.ok and result.records == 2


@pytest.mark.skipif(not os.access("/dev/full", os.W_OK), reason="needs /dev/full")
async def test_disk_full_is_a_real_write_failure():
    failures: list[BaseException] = []
    log = AuditLog(Path("/dev/full"), on_failure=failures.append)
    await log.start()
    with pytest.raises(AuditUnavailable, match="No space left"):
        await log.append("t", {"i": 1})
    assert len(failures) == 1 and failures[0].errno == errno.ENOSPC
    await log.close()


async def test_log_truncated_underneath_the_writer_fails_closed(tmp_path):
    path = tmp_path / "audit.log"
    failures: list[BaseException] = []
    async with AuditLog(path, on_failure=failures.append) as log:
        for i in range(3):
            await log.append("t", {"i": i})
        with open(path, "r+b") as f:
            f.truncate(10)
        with pytest.raises(AuditUnavailable, match="shrank"):
            await log.append("t", {"i": 3})
    assert len(failures) == 1 and isinstance(failures[0], AuditCorrupt)


@pytest.mark.parametrize(
    "data",
    [
        {"secret": "x"},
        {"api_secret": "x"},
        {"APCA-API-SECRET-KEY": "x"},
        {"headers": {"apiSecret": "x"}},
        {"password": "x"},
        {"nested": [{"ok": 1}, {"deep": {"auth_token": "x"}}]},
        {"accessToken": "x"},
        {"token": "x"},
        {"private_key": "x"},
        {"privateKey": "x"},
        {"master_key": "x"},
        {"Passphrase": "x"},
    ],
)
async def test_secret_named_keys_are_refused(tmp_path, data):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        with pytest.raises(ValueError, match="names a secret") as err:
            await log.append("t", data)
        assert "'x'" not in str(err.value) and ": x" not in str(
            err.value
        )  # value never echoed
        with pytest.raises(ValueError):
            append_sync(path, "t", data)
        assert log.seq == 0 and not log.broken
    assert path.read_bytes() == b""


async def test_ordinary_keys_are_accepted(tmp_path):
    async with AuditLog(tmp_path / "audit.log") as log:
        rec = await log.append(
            "t",
            {
                "key_id": "AK1",
                "tokens_remaining": 3,
                "signer_key": "/path",
                "broker_key_id": "PK",
            },
        )
    assert rec.seq == 1


async def test_invalid_input_and_closed_log(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    with pytest.raises(AuditUnavailable, match="not open"):
        await log.append("t", {})
    await log.start()
    with pytest.raises(ValueError):
        await log.append("", {})
    with pytest.raises(ValueError):
        await log.append("t", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="serialisable"):
        await log.append("t", {"big": 2**70})
    await log.close()
    with pytest.raises(AuditUnavailable):
        await log.append("t", {})


# ---------------------------------------------------------------------------------------
# checkpoints


async def test_checkpoint_key_created_private_and_reloaded(tmp_path):
    path = tmp_path / "audit" / "checkpoint.key"
    key = load_or_create_checkpoint_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_checkpoint_key(path)
    assert key_id(again) == key_id(key) and len(key_id(key)) == 16


async def test_checkpoints_every_n_records_on_demand_and_on_close(tmp_path):
    key = load_or_create_checkpoint_key(tmp_path / "k.pem")
    cps = tmp_path / "checkpoints.jsonl"
    log = AuditLog(
        tmp_path / "audit.log",
        checkpoint_key=key,
        checkpoint_path=cps,
        checkpoint_every=10,
    )
    await log.start()
    assert await log.checkpoint() is None  # empty log: nothing to sign
    for i in range(25):
        await log.append("t", {"i": i})
    assert [c.seq for c in iter_checkpoints(cps)] == [10, 20]
    await log.append("t", {"i": 25})
    cp = await log.checkpoint()
    assert cp.seq == 26 and cp.hash == log.last_hash
    await log.append("t", {"i": 26})
    await log.close()  # final checkpoint anchors the tail
    got = list(iter_checkpoints(cps))
    assert [c.seq for c in got] == [10, 20, 26, 27]
    assert all(verify_checkpoint(c, key.public_key()) for c in got)
    assert (
        verify_log(
            tmp_path / "audit.log", checkpoints_path=cps, public_key=key.public_key()
        ).checkpoints
        == 4
    )


async def test_checkpoint_interval_when_idle(tmp_path):
    key = load_or_create_checkpoint_key(tmp_path / "k.pem")
    cps = tmp_path / "checkpoints.jsonl"
    async with AuditLog(
        tmp_path / "audit.log",
        checkpoint_key=key,
        checkpoint_path=cps,
        checkpoint_interval_s=0.05,
    ) as log:
        await log.append("t", {})
        deadline = asyncio.get_running_loop().time() + 10
        while not (cps.exists() and cps.read_bytes()):
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint while idle"
            await asyncio.sleep(0.01)
        assert [c.seq for c in iter_checkpoints(cps)] == [1]


async def test_start_refuses_a_log_truncated_below_its_last_checkpoint(tmp_path):
    key = load_or_create_checkpoint_key(tmp_path / "k.pem")
    cps, path = tmp_path / "checkpoints.jsonl", tmp_path / "audit.log"
    async with AuditLog(path, checkpoint_key=key, checkpoint_path=cps) as log:
        for i in range(5):
            await log.append("t", {"i": i})
    data = path.read_bytes()
    path.write_bytes(b"".join(data.splitlines(keepends=True)[:3]))
    with pytest.raises(AuditCorrupt, match="truncated"):
        await AuditLog(path, checkpoint_key=key, checkpoint_path=cps).start()


# --- misuse and the edges of the lifecycle ------------------------------------------------------


def test_constructor_refuses_settings_that_cannot_work(tmp_path):
    with pytest.raises(ValueError, match=r"^max_batch must be at least 1$"):
        AuditLog(tmp_path / "a.log", max_batch=0)
    key = load_or_create_checkpoint_key(tmp_path / "k.pem")
    with pytest.raises(ValueError, match=r"^checkpoint_key and checkpoint_path go together$"):
        AuditLog(tmp_path / "a.log", checkpoint_key=key)
    with pytest.raises(ValueError, match=r"^checkpoint_key and checkpoint_path go together$"):
        AuditLog(tmp_path / "a.log", checkpoint_path=tmp_path / "cps.jsonl")


async def test_start_twice_and_close_before_start(tmp_path):
    never = AuditLog(tmp_path / "never.log")
    await never.close()  # nothing to release
    with pytest.raises(AuditUnavailable):
        await never.append("t", {})
    async with AuditLog(tmp_path / "a.log") as log:
        with pytest.raises(RuntimeError, match=r"^AuditLog.start\(\) called twice$"):
            await log.start()


async def test_checkpoint_needs_a_key_and_a_healthy_open_log(tmp_path):
    async with AuditLog(tmp_path / "plain.log") as log:
        with pytest.raises(RuntimeError, match=r"^no checkpoint key configured$"):
            await log.checkpoint()
    key = load_or_create_checkpoint_key(tmp_path / "k.pem")
    log = AuditLog(tmp_path / "a.log", checkpoint_key=key, checkpoint_path=tmp_path / "cps.jsonl",
                   sync=SyncSpy(fail_after=1))
    with pytest.raises(AuditUnavailable, match=r"^audit log is not open$"):
        await log.checkpoint()
    await log.start()
    await log.append("t", {"i": 1})
    with pytest.raises(AuditUnavailable):
        await log.append("t", {"i": 2})  # the disk fails: the log is broken from now on
    with pytest.raises(AuditUnavailable):
        await log.checkpoint()
    await log.close()


async def test_a_failing_on_failure_callback_does_not_unbreak_the_log(tmp_path):
    def callback(exc):
        raise RuntimeError("the alert could not be sent")

    log = AuditLog(tmp_path / "a.log", on_failure=callback, sync=SyncSpy(fail_after=0))
    await log.start()
    with pytest.raises(AuditUnavailable):
        await log.append("t", {"i": 1})
    assert log.broken
    with pytest.raises(AuditUnavailable):
        await log.append("t", {"i": 2})
    await log.close()


def test_checkpoint_sync_of_a_missing_or_empty_log_signs_nothing(tmp_path):
    from gateway.audit.log import checkpoint_sync

    key = load_or_create_checkpoint_key(tmp_path / "k.pem")
    cps = tmp_path / "cps.jsonl"
    assert checkpoint_sync(tmp_path / "absent.log", cps, key) is None
    (tmp_path / "empty.log").write_bytes(b"")
    assert checkpoint_sync(tmp_path / "empty.log", cps, key) is None
    assert not cps.exists()


async def test_a_torn_line_left_by_another_process_is_repaired_on_the_next_write(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        await log.append("t", {"i": 1})
        with open(path, "ab") as f:
            f.write(b'{"data":{"i":')  # a CLI process died half-way through its append
        rec = await log.append("t", {"i": 2})
    types = [r.type for r in iter_records(path)]
    assert types == ["t", REPAIR_TYPE, "t"] and rec.seq == 3
    assert verify_log(path).ok
