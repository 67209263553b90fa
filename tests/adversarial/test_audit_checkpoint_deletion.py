"""Finding 9: rewriting the audit log, re-hashing the chain and deleting checkpoints.jsonl no
longer passes `audit verify`; and verify says how much of the tail no checkpoint covers yet."""

from __future__ import annotations

import orjson

from gateway.audit.records import GENESIS, encode_record, parse_line
import pytest

from gateway.home import Home
from gateway.server import Gateway, ServeOptions, StartupError
from tests.integration.support import start_gateway

from .cli import run


def _rewrite_and_rehash(home: Home) -> None:
    """What someone with write access does: change a record, recompute every hash after it."""
    prev, out = GENESIS, []
    for line in home.audit_log.read_bytes().splitlines(keepends=True):
        rec = parse_line(line)
        data = {**rec.data, "actor": "nobody"} if rec.type == "key.issue" else rec.data
        forged = encode_record(rec.seq, rec.ts, rec.type, data, prev)
        out.append(forged.line)
        prev = forged.hash
    home.audit_log.write_bytes(b"".join(out))


async def test_a_rehashed_log_without_its_checkpoints_fails_verify(gateway_home):
    home = Home.at(gateway_home.home)
    running = await start_gateway(gateway_home, venue="paper")
    await running.gateway.stop()  # records and a final checkpoint
    assert run("audit", "verify", "--home", str(home.root)).returncode == 0

    _rewrite_and_rehash(home)
    refused = run("audit", "verify", "--home", str(home.root), check=False)
    assert refused.returncode == 1 and "differs from its signed checkpoint" in refused.stderr
    home.audit_checkpoints.unlink()  # ... and remove the evidence
    refused = run("audit", "verify", "--home", str(home.root), check=False)
    assert refused.returncode == 1 and "no signed checkpoint" in refused.stderr
    home.audit_checkpoints.write_bytes(b"")  # an emptied file is no better
    assert run("audit", "verify", "--home", str(home.root), check=False).returncode == 1
    # Nor does the gateway start and sign a fresh checkpoint over the forged chain.
    with pytest.raises(StartupError, match="may have been rewritten"):
        Gateway(home, ServeOptions(port=0))


def test_verify_says_how_much_of_the_tail_no_checkpoint_covers(gateway_home):
    home = str(gateway_home.home)
    fresh = orjson.loads(run("audit", "verify", "--home", home, "--json").stdout)
    assert fresh["ok"] and fresh["checkpoints"] == 1 and fresh["uncovered_records"] == 0  # init signs one
    run("keys", "issue", "--home", home, "--label", "second")
    run("keys", "issue", "--home", home, "--label", "third")
    after = orjson.loads(run("audit", "verify", "--home", home, "--json").stdout)
    assert after["ok"] and after["uncovered_records"] == after["last_seq"] - fresh["last_seq"] == 2
    assert after["last_checkpoint_seq"] == fresh["last_seq"]
    text = run("audit", "verify", "--home", home).stdout
    assert f"the last 2 records (after seq {fresh['last_seq']}) are not covered" in text
    run("audit", "checkpoint", "--home", home)
    assert orjson.loads(run("audit", "verify", "--home", home, "--json").stdout)["uncovered_records"] == 0
