"""Verification catches every kind of tampering; export, tail and query read the log back."""

from __future__ import annotations

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
