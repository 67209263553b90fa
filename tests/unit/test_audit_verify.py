"""Verification catches every kind of tampering; export, tail and query read the log back."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.checkpoint import (
    Checkpoint,
    append_checkpoint,
    load_or_create_checkpoint_key,
    load_public_key,
    sign_checkpoint,
)
from gateway.audit.log import AuditLog, append_sync, checkpoint_sync
from gateway.audit.records import GENESIS, encode_record, parse_line
from gateway.audit.verify import iter_records, query, verify_log


class Tree:
    def __init__(self, root: Path):
        self.log = root / "audit.log"
        self.cps = root / "checkpoints.jsonl"
        self.key = load_or_create_checkpoint_key(root / "checkpoint.key")
        self.pub = self.key.public_key()

    def lines(self) -> list[bytes]:
        return self.log.read_bytes().splitlines(keepends=True)

    def write(self, lines: list[bytes]) -> None:
        self.log.write_bytes(b"".join(lines))

    def verify(self, with_checkpoints: bool = True):
        if with_checkpoints:
            return verify_log(self.log, checkpoints_path=self.cps, public_key=self.pub)
        return verify_log(self.log)


@pytest.fixture
def tree(tmp_path) -> Tree:
    """12 records, checkpoints signed at seq 5, 10 and 12 (the tail)."""
    t = Tree(tmp_path)
    for i in range(1, 13):
        append_sync(t.log, "order.decision", {"i": i, "key_id": "AK1"})
        if i in (5, 10, 12):
            checkpoint_sync(t.log, t.cps, t.key)
    return t


def test_untouched_log_passes(tree):
    result = tree.verify()
    assert result.ok and result.error is None and result.error_seq is None
    assert (result.records, result.last_seq, result.checkpoints) == (12, 12, 3)
    assert result.last_hash == parse_line(tree.lines()[-1]).hash
    assert tree.verify(with_checkpoints=False).ok


def test_every_single_changed_byte_is_detected(tmp_path):
    t = Tree(tmp_path)
    for i in range(3):
        append_sync(t.log, "t", {"i": i, "px": "1.5"})
    original = t.log.read_bytes()
    for pos in range(len(original)):
        mutated = bytearray(original)
        mutated[pos] ^= 0x01
        t.log.write_bytes(bytes(mutated))
        result = verify_log(t.log)
        assert not result.ok, f"flipping byte {pos} went unnoticed"
        assert result.error_seq is not None
    t.log.write_bytes(original)
    assert verify_log(t.log).ok


def test_changed_value_reports_the_record(tree):
    lines = tree.lines()
    lines[6] = lines[6].replace(b'"i":7', b'"i":8')
    tree.write(lines)
    result = tree.verify()
    assert not result.ok and result.error_seq == 7 and "hash" in result.error
    assert result.records == 6 and result.last_seq == 6


def test_deleted_record_is_detected(tree):
    lines = tree.lines()
    del lines[3]
    tree.write(lines)
    result = tree.verify(with_checkpoints=False)
    assert not result.ok and result.error_seq == 4 and "missing" in result.error


def test_deleted_first_record_is_detected(tree):
    tree.write(tree.lines()[1:])
    result = tree.verify(with_checkpoints=False)
    assert not result.ok and result.error_seq == 1


def test_reordered_pair_is_detected(tree):
    lines = tree.lines()
    lines[4], lines[5] = lines[5], lines[4]
    tree.write(lines)
    result = tree.verify(with_checkpoints=False)
    assert not result.ok and result.error_seq == 5 and "seq 6 where 5" in result.error


def test_torn_final_line_is_detected(tree):
    tree.log.write_bytes(tree.log.read_bytes() + b'{"data":{"i":13')
    result = tree.verify()
    assert not result.ok and result.error_seq == 13 and "torn" in result.error
    assert result.records == 12


def test_garbage_line_is_detected(tree):
    lines = tree.lines()
    lines.insert(2, b"not json at all\n")
    tree.write(lines)
    result = tree.verify(with_checkpoints=False)
    assert not result.ok and result.error_seq == 3


def test_truncated_tail_passes_the_chain_but_fails_against_the_checkpoint(tree):
    tree.write(tree.lines()[:11])  # record 12 cut off
    assert tree.verify(with_checkpoints=False).ok  # a chain alone cannot see a cut tail
    result = tree.verify()
    assert not result.ok and "truncated" in result.error and result.last_seq == 11


def test_rewritten_tail_with_recomputed_chain_fails_against_the_checkpoint(tree):
    lines = tree.lines()
    keep = lines[:7]
    prev = parse_line(keep[-1]).hash
    for line in lines[
        7:
    ]:  # an attacker rewrites records 8.. and rechains them perfectly
        rec = parse_line(line)
        forged = encode_record(rec.seq, rec.ts, rec.type, {**rec.data, "i": -1}, prev)
        keep.append(forged.line)
        prev = forged.hash
    tree.write(keep)
    assert tree.verify(with_checkpoints=False).ok
    result = tree.verify()
    assert not result.ok and result.error_seq == 10 and "checkpoint" in result.error


def test_forged_checkpoint_signature_fails(tree):
    cps = tree.cps.read_bytes().splitlines(keepends=True)
    cp = Checkpoint.from_line(cps[-1])
    bad = Checkpoint(
        cp.seq,
        cp.hash,
        cp.ts,
        cp.key_id,
        ("0" if cp.sig[0] != "0" else "1") + cp.sig[1:],
    )
    tree.cps.write_bytes(b"".join(cps[:-1]) + bad.to_line())
    result = tree.verify()
    assert not result.ok and "bad signature" in result.error


def test_checkpoint_from_another_key_fails(tree):
    tree.write(tree.lines()[:11])
    # the attacker re-signs the truncated tail with their own key
    intruder = Ed25519PrivateKey.generate()
    tree.cps.write_bytes(b"")
    checkpoint_sync(tree.log, tree.cps, intruder)
    result = tree.verify()
    assert not result.ok and "signed by key" in result.error


def test_checkpoints_without_a_key_fail_closed(tree):
    result = verify_log(tree.log, checkpoints_path=tree.cps)
    assert not result.ok and "no public key" in result.error


def test_checkpoint_with_edited_hash_fails(tree):
    cps = tree.cps.read_bytes().splitlines(keepends=True)
    obj = orjson.loads(cps[0])
    obj["hash"] = "f" * 64
    cps[0] = orjson.dumps(obj) + b"\n"
    tree.cps.write_bytes(b"".join(cps))
    assert not tree.verify().ok


def test_public_key_loads_from_private_or_public_pem(tree, tmp_path):
    from cryptography.hazmat.primitives import serialization

    pub_pem = tree.pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pub_pem)
    for src in (tmp_path / "checkpoint.key", tmp_path / "pub.pem"):
        assert verify_log(
            tree.log, checkpoints_path=tree.cps, public_key=load_public_key(src)
        ).ok


def test_missing_log_is_empty_unless_checkpoints_say_otherwise(tree, tmp_path):
    missing = tmp_path / "nope.log"
    result = verify_log(missing)
    assert result.ok and result.records == 0 and result.last_hash == GENESIS
    result = verify_log(missing, checkpoints_path=tree.cps, public_key=tree.pub)
    assert not result.ok and "truncated" in result.error


def test_checkpoint_append_drops_its_own_torn_line(tree):
    tree.cps.write_bytes(tree.cps.read_bytes() + b'{"hash":"ab')
    assert tree.verify().ok  # an unterminated checkpoint line adds no claim
    append_checkpoint(
        tree.cps, sign_checkpoint(tree.key, 12, parse_line(tree.lines()[-1]).hash)
    )
    assert all(
        line.startswith(b'{"hash"') for line in tree.cps.read_bytes().splitlines()
    )
    assert tree.verify().checkpoints == 4


# ---------------------------------------------------------------------------------------
# export, tail, query


def test_export_reproduces_the_file_byte_for_byte(tree):
    assert (
        b"".join(r.to_line() for r in iter_records(tree.log)) == tree.log.read_bytes()
    )


async def test_iter_records_since_seq_on_a_large_log(tmp_path):
    path = tmp_path / "audit.log"
    async with AuditLog(path) as log:
        await asyncio_gather_appends(log, 3000)
    assert path.stat().st_size > 100_000  # large enough for the bisection to kick in
    assert [r.seq for r in iter_records(path, since_seq=2990)] == list(
        range(2991, 3001)
    )
    assert [r.seq for r in iter_records(path, since_seq=0)] == list(range(1, 3001))
    assert next(iter_records(path, since_seq=1)).seq == 2
    assert list(iter_records(path, since_seq=3000)) == []
    assert list(iter_records(path, since_seq=5000)) == []
    result = verify_log(path)
    assert result.ok and result.records == 3000


async def asyncio_gather_appends(log: AuditLog, n: int) -> None:
    import asyncio

    await asyncio.gather(
        *(log.append("t", {"i": i, "pad": "x" * 40}) for i in range(n))
    )


def test_iter_records_skips_an_unterminated_tail(tree):
    tree.log.write_bytes(tree.log.read_bytes() + b'{"data"')
    assert [r.seq for r in iter_records(tree.log)][-1] == 12


async def test_query_filters(tmp_path):
    path = tmp_path / "audit.log"
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    clock = iter(t0 + timedelta(minutes=m) for m in range(100))
    async with AuditLog(path, now=lambda: next(clock)) as log:
        await log.append(
            "order.decision", {"key_id": "AK1", "decision": "allow", "codes": []}
        )  # 12:00
        await log.append(
            "order.decision",
            {
                "key_id": "AK1",
                "decision": "reject",
                "codes": ["max_position_pct", "max_leverage"],
            },
        )  # 12:01
        await log.append(
            "order.result", {"key_id": "AK1", "status": "accepted"}
        )  # 12:02
        await log.append(
            "order.decision",
            {"key_id": "AK2", "decision": "reject", "codes": ["max_leverage"]},
        )
        await log.append("control.lockdown", {"reason": "test"})  # 12:04

    def seqs(**kw):
        return [r.seq for r in query(path, **kw)]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs(type="order.decision") == [1, 2, 4]
    assert seqs(type="order.") == [1, 2, 3, 4]
    assert seqs(key_id="AK1") == [1, 2, 3]
    assert seqs(decision="reject") == [2, 4]
    assert seqs(code="max_leverage") == [2, 4]
    assert seqs(code="max_position_pct", key_id="AK2") == []
    assert seqs(since=t0 + timedelta(minutes=1), until=t0 + timedelta(minutes=4)) == [
        2,
        3,
        4,
    ]
    assert seqs(since="2025-03-01T12:03:00Z") == [4, 5]
    assert seqs(until="2025-03-01T13:01:00+01:00") == [1]  # offsets are honoured
    assert seqs(
        type="order.decision", decision="reject", since=t0 + timedelta(minutes=2)
    ) == [4]


def test_a_record_edited_and_rehashed_between_checkpoints_breaks_the_next_link(tree):
    """Record 7 rewritten with a correct hash of its new bytes: it still parses, 5 and 10 still
    match their checkpoints, and only record 8's ``prev`` no longer names it."""
    lines = tree.lines()
    rec = parse_line(lines[6])
    lines[6] = encode_record(rec.seq, rec.ts, rec.type, {**rec.data, "i": 700}, rec.prev).line
    tree.write(lines)
    for result in (tree.verify(), tree.verify(with_checkpoints=False)):
        assert not result.ok and result.error_seq == 8
        assert result.error == "record 8 does not link to the previous record (prev mismatch)"
        assert result.records == 7 and result.last_seq == 7
        assert result.last_hash == parse_line(lines[6]).hash


# ---------------------------------------------------------------------------------------
# Every failure says where it stopped: what verified before it, and which record or checkpoint


def _hash_of(tree, seq: int) -> str:
    return parse_line(tree.lines()[seq - 1]).hash


def _expect(result, error: str, error_seq, records: int, last_seq: int, last_hash: str, checkpoints: int):
    assert result.ok is False
    assert (result.error, result.error_seq) == (error, error_seq)
    assert (result.records, result.last_seq, result.last_hash, result.checkpoints) == (
        records, last_seq, last_hash, checkpoints
    )


def test_a_bad_third_checkpoint_fails_before_the_chain_is_read(tree):
    cps = tree.cps.read_bytes().splitlines(keepends=True)
    cp = Checkpoint.from_line(cps[2])
    forged = Checkpoint(cp.seq, cp.hash, cp.ts, cp.key_id, ("0" if cp.sig[0] != "0" else "1") + cp.sig[1:])
    tree.cps.write_bytes(b"".join(cps[:2]) + forged.to_line())
    _expect(tree.verify(), "checkpoint #3 (seq 12) does not verify: bad signature", 12, 0, 0, GENESIS, 2)


def test_checkpoints_without_a_key_name_the_first_one(tree):
    result = verify_log(tree.log, checkpoints_path=tree.cps)
    _expect(result, "checkpoints present but no public key given to verify them", 5, 0, 0, GENESIS, 0)


def test_two_signed_checkpoints_that_disagree_on_a_record_fail(tree):
    append_checkpoint(tree.cps, sign_checkpoint(tree.key, 5, "e" * 64))
    _expect(tree.verify(), "two checkpoints for seq 5 disagree on its hash", 5, 0, 0, GENESIS, 3)


def test_a_checkpoint_line_of_the_wrong_shape_fails_with_its_seq(tree):
    line = orjson.dumps({"seq": 7, "hash": 7, "ts": "t", "key_id": "k", "sig": "s"}) + b"\n"
    tree.cps.write_bytes(tree.cps.read_bytes() + line)
    _expect(tree.verify(), "checkpoint file: checkpoint fields have the wrong types", 7, 0, 0, GENESIS, 3)


def test_a_torn_final_record_fails_after_the_intact_ones(tree):
    tree.log.write_bytes(tree.log.read_bytes() + b'{"data":{}')
    _expect(
        tree.verify(with_checkpoints=False),
        "torn final line (10 bytes without a newline): a write cut short by a crash (the gateway drops it "
        "on start) or tampering",
        13, 12, 12, _hash_of(tree, 12), 0,
    )


def test_a_garbage_record_fails_after_the_intact_ones(tree):
    lines = tree.lines()
    lines[5] = b"garbage\n"
    tree.write(lines)
    result = tree.verify(with_checkpoints=False)
    assert result.error.startswith("record at line 6: ")
    _expect(result, result.error, 6, 5, 5, _hash_of(tree, 5), 0)


def test_a_missing_record_and_a_duplicated_one_are_told_apart(tree):
    lines = tree.lines()
    tree.write(lines[:5] + lines[6:])
    _expect(tree.verify(with_checkpoints=False), "seq 7 where 6 was expected: a record is missing or out of order",
            6, 5, 5, _hash_of(tree, 5), 0)
    tree.write(lines[:5] + lines[4:])
    _expect(tree.verify(with_checkpoints=False), "seq 5 where 6 was expected: a record is out of order or duplicated",
            6, 5, 5, _hash_of(tree, 5), 0)


def test_a_rewritten_record_under_a_checkpoint_fails_at_that_record(tree):
    lines = tree.lines()
    prev = _hash_of(tree, 9)
    for i in range(9, 12):  # records 10.. rewritten and re-chained; 10 is under a checkpoint
        rec = parse_line(lines[i])
        forged = encode_record(rec.seq, rec.ts, rec.type, {**rec.data, "i": -rec.seq}, prev)
        lines[i], prev = forged.line, forged.hash
    tree.write(lines)
    _expect(tree.verify(), "record 10 differs from its signed checkpoint: the log was rewritten",
            10, 9, 9, _hash_of(tree, 9), 3)


def test_a_log_cut_below_its_checkpoints_names_the_highest(tree):
    lines = tree.lines()
    tree.write(lines[:9])
    _expect(tree.verify(), "log ends at seq 9 but a checkpoint was signed at seq 12: the log was truncated",
            10, 9, 9, parse_line(lines[8]).hash, 3)


# ---------------------------------------------------------------------------------------
# checkpoint lines and keys


@pytest.mark.parametrize(
    "line, message, seq",
    [
        (b"{nope", "checkpoint line is not valid JSON", None),
        (b"[1, 2]", "checkpoint does not have exactly the fields seq, hash, ts, key_id, sig", None),
        (orjson.dumps({"seq": 1, "hash": "h", "ts": "t", "key_id": "k", "sig": "s", "extra": 1}),
         "checkpoint does not have exactly the fields seq, hash, ts, key_id, sig", None),
        (orjson.dumps({"seq": True, "hash": "h", "ts": "t", "key_id": "k", "sig": "s"}),
         "checkpoint seq is not a positive integer", None),
        (orjson.dumps({"seq": 0, "hash": "h", "ts": "t", "key_id": "k", "sig": "s"}),
         "checkpoint seq is not a positive integer", None),
        (orjson.dumps({"seq": "3", "hash": "h", "ts": "t", "key_id": "k", "sig": "s"}),
         "checkpoint seq is not a positive integer", None),
        (orjson.dumps({"seq": 3, "hash": "h", "ts": "t", "key_id": "k", "sig": None}),
         "checkpoint fields have the wrong types", 3),
    ],
)
def test_checkpoint_lines_are_strict(line, message, seq):
    from gateway.audit.records import AuditCorrupt

    with pytest.raises(AuditCorrupt) as info:
        Checkpoint.from_line(line)
    assert str(info.value) == message and info.value.seq == seq


def test_a_checkpoint_whose_signature_is_not_hex_does_not_verify(tree):
    from gateway.audit.checkpoint import verify_checkpoint

    cp = Checkpoint.from_line(tree.cps.read_bytes().splitlines()[0])
    assert verify_checkpoint(cp, tree.pub)
    for sig in ("zz" + cp.sig[2:], cp.sig[:-1], "é" * 4):
        assert not verify_checkpoint(Checkpoint(cp.seq, cp.hash, cp.ts, cp.key_id, sig), tree.pub)


def test_the_last_checkpoint_of_an_empty_or_missing_file_is_none(tree, tmp_path):
    from gateway.audit.checkpoint import last_checkpoint

    assert last_checkpoint(tmp_path / "absent.jsonl") is None
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert last_checkpoint(tmp_path / "empty.jsonl") is None
    assert last_checkpoint(tree.cps).seq == 12


def test_a_new_checkpoint_file_is_owner_only_in_an_owner_only_directory(tree, tmp_path):
    path = tmp_path / "a" / "b" / "checkpoints.jsonl"
    append_checkpoint(path, sign_checkpoint(tree.key, 1, "0" * 64))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_keys_that_are_not_ed25519_are_refused_by_name(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "ec.pem"
    private.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    public = tmp_path / "ec.pub.pem"
    public.write_bytes(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ValueError, match=rf"^{private} is not an Ed25519 private key$"):
        load_or_create_checkpoint_key(private)
    with pytest.raises(ValueError, match=rf"^{private} is not an Ed25519 key$"):
        load_public_key(private)
    with pytest.raises(ValueError, match=rf"^{public} is not an Ed25519 key$"):
        load_public_key(public)


def test_a_new_checkpoint_file_makes_its_directory_entry_durable(tree, tmp_path, monkeypatch):
    """The file's name must survive a power cut too: the directory is fsynced when the file is
    created, and only then (observed at the system call, not by replacing our own code)."""
    import stat as stat_mod

    synced_dirs: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        if stat_mod.S_ISDIR(os.fstat(fd).st_mode):
            synced_dirs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    path = tmp_path / "fresh" / "checkpoints.jsonl"
    append_checkpoint(path, sign_checkpoint(tree.key, 1, "0" * 64))
    assert len(synced_dirs) == 1
    append_checkpoint(path, sign_checkpoint(tree.key, 2, "1" * 64))
    assert len(synced_dirs) == 1


def test_records_appended_after_a_read_began_are_not_part_of_it(tree):
    reading = iter_records(tree.log)
    assert next(reading).seq == 1  # the size to read up to is fixed now
    append_sync(tree.log, "order.decision", {"i": 13, "key_id": "AK1"})
    assert [r.seq for r in reading] == list(range(2, 13))
    assert [r.seq for r in iter_records(tree.log)][-1] == 13


def test_a_line_completed_after_a_read_began_is_still_torn_for_that_read(tree):
    last = parse_line(tree.lines()[-1])
    line = encode_record(13, last.ts, "t", {"i": 13}, last.hash).line
    tree.log.write_bytes(tree.log.read_bytes() + line[:40])  # a write in progress
    reading = iter_records(tree.log)
    assert next(reading).seq == 1  # read up to the torn line's end, as it was then
    with open(tree.log, "ab") as f:
        f.write(line[40:])  # the write completes
    assert [r.seq for r in reading] == list(range(2, 13))
    assert [r.seq for r in iter_records(tree.log)][-1] == 13


def _write_log(path: Path, n: int) -> None:
    prev, lines = GENESIS, []
    for seq in range(1, n + 1):
        rec = encode_record(seq, "2026-01-01T00:00:00.000000Z", "t", {"i": seq, "pad": "x" * 100}, prev)
        lines.append(rec.line)
        prev = rec.hash
    path.write_bytes(b"".join(lines))


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/self/io")
def test_tailing_a_large_log_reads_only_its_end(tmp_path):
    path = tmp_path / "audit.log"
    _write_log(path, 20_000)  # about 5 MB
    size = path.stat().st_size
    before = _bytes_read()
    assert [r.seq for r in iter_records(path, since_seq=19_990)] == list(range(19_991, 20_001))
    assert _bytes_read() - before < size // 20
    assert [r.seq for r in iter_records(path, since_seq=9_999)][:2] == [10_000, 10_001]


async def test_query_keeps_looking_past_records_that_do_not_match(tmp_path):
    """Every filter skips a record and goes on; none assumes the log is sorted by time (a clock
    stepped back by NTP writes an earlier ts after a later one)."""
    path = tmp_path / "audit.log"
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    stamps = iter([t0 + timedelta(minutes=m) for m in (10, 0, 20, 5, 30)])
    async with AuditLog(path, now=lambda: next(stamps)) as log:
        await log.append("control.lockdown", {"reason": "x"})  # 12:10
        await log.append("order.decision", {"key_id": "AK1", "decision": "allow", "codes": []})  # 12:00
        await log.append("order.decision", {"key_id": "AK2", "decision": "reject", "codes": ["a"]})  # 12:20
        await log.append("order.decision", {"key_id": "AK1", "decision": "reject", "codes": ["b"]})  # 12:05
        await log.append("order.decision", {"key_id": "AK2", "decision": "reject", "codes": ["b"]})  # 12:30

    def seqs(**kw):
        return [r.seq for r in query(path, **kw)]

    assert seqs(type="order.") == [2, 3, 4, 5]
    assert seqs(type="order.decision") == [2, 3, 4, 5]
    assert seqs(until=t0 + timedelta(minutes=6)) == [2, 4]
    assert seqs(since=t0 + timedelta(minutes=15)) == [3, 5]
    assert seqs(key_id="AK2") == [3, 5]
    assert seqs(decision="reject") == [3, 4, 5]
    assert seqs(code="b") == [4, 5]
