"""Audit log throughput with durable (fdatasync-ed) writes. Run by hand:

    python bench/bench_audit.py [--records 10000] [--dir DIR]

Prints records/second for
  - sequential appends: each ``await append`` waits for its own fsync (one record per batch);
  - concurrent appends: all records in flight at once (group commit: one fsync per batch);
  - 64 concurrent writers, each appending in a loop (closer to a busy gateway);
the ratio between them, the cost of one bare fdatasync on this disk for reference, and the
verification speed (records/second, checkpoints included). Finishes in well under 30 s: the
sequential run stops after ``--seq-seconds`` and reports the rate it reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.audit.checkpoint import load_or_create_checkpoint_key
from gateway.audit.log import AuditLog
from gateway.audit.verify import verify_log


def record(i: int) -> dict:
    """A record shaped like an order decision."""
    return {
        "key_id": "AKBENCH0001",
        "decision": "reject" if i % 7 == 0 else "allow",
        "codes": ["max_position_pct"] if i % 7 == 0 else [],
        "intent": {
            "symbol": "AAPL",
            "side": "buy",
            "type": "limit",
            "qty": Decimal(3),
            "limit_price": Decimal("187.25"),
            "client_order_id": f"bench-{i}",
        },
        "policy_version": 3,
    }


def bare_fsync_ms(directory: Path, n: int = 200) -> float:
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        t = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 300)
            os.fdatasync(fd)
        return (time.perf_counter() - t) / n * 1000
    finally:
        os.close(fd)
        path.unlink()


async def sequential(path: Path, n: int, budget_s: float) -> tuple[int, float]:
    async with AuditLog(path) as log:
        t = time.perf_counter()
        done = 0
        while done < n:
            await log.append("order.decision", record(done))
            done += 1
            if done % 100 == 0 and time.perf_counter() - t > budget_s:
                break
        return done, time.perf_counter() - t


async def concurrent_all(path: Path, n: int, key, cps: Path) -> tuple[int, float, int]:
    async with AuditLog(path, checkpoint_key=key, checkpoint_path=cps) as log:
        t = time.perf_counter()
        await asyncio.gather(
            *(log.append("order.decision", record(i)) for i in range(n))
        )
        return n, time.perf_counter() - t, log.batches_written


async def concurrent_workers(
    path: Path, n: int, workers: int
) -> tuple[int, float, int]:
    async with AuditLog(path) as log:
        per = n // workers

        async def worker(w: int) -> None:
            for i in range(per):
                await log.append("order.decision", record(w * per + i))

        t = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(workers)))
        return per * workers, time.perf_counter() - t, log.batches_written


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    ap.add_argument(
        "--seq-seconds",
        type=float,
        default=8.0,
        help="time budget of the sequential run",
    )
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=args.dir))
    try:
        n = args.records
        fsync_ms = bare_fsync_ms(root)
        key = load_or_create_checkpoint_key(root / "checkpoint.key")

        s_n, s_t = asyncio.run(sequential(root / "seq.log", n, args.seq_seconds))
        c_n, c_t, c_batches = asyncio.run(
            concurrent_all(root / "conc.log", n, key, root / "cps.jsonl")
        )
        w_n, w_t, w_batches = asyncio.run(
            concurrent_workers(root / "workers.log", n, 64)
        )

        t = time.perf_counter()
        result = verify_log(
            root / "conc.log",
            checkpoints_path=root / "cps.jsonl",
            public_key=key.public_key(),
        )
        v_t = time.perf_counter() - t
        assert result.ok and result.records == c_n, result

        seq_rate, conc_rate, work_rate = s_n / s_t, c_n / c_t, w_n / w_t
        size = (root / "conc.log").stat().st_size
        print(f"audit log bench in {root} (python {sys.version.split()[0]})")
        print(
            f"  bare write+fdatasync:            {fsync_ms:8.3f} ms  (~{1000 / fsync_ms:,.0f}/s ceiling unbatched)"
        )
        print(
            f"  sequential appends ({s_n:>6,}):     {seq_rate:10,.0f} records/s  ({s_t / s_n * 1e3:.3f} ms each)"
        )
        print(
            f"  concurrent appends ({c_n:>6,}):     {conc_rate:10,.0f} records/s  "
            f"({c_batches} batches, {c_n / c_batches:.0f} records/fsync, checkpoints on)"
        )
        print(
            f"  64 writers in a loop ({w_n:>6,}):   {work_rate:10,.0f} records/s  "
            f"({w_batches} batches, {w_n / w_batches:.1f} records/fsync)"
        )
        print(f"  ratio concurrent / sequential:    {conc_rate / seq_rate:10.1f}x")
        print(f"  ratio 64 writers / sequential:    {work_rate / seq_rate:10.1f}x")
        print(
            f"  verify ({result.records:,} records, {size / 1e6:.1f} MB, {result.checkpoints} checkpoints): "
            f"{result.records / v_t:,.0f} records/s  ({v_t * 1e3:.0f} ms)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
