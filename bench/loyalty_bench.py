"""Loyalty ledger throughput: durable appends per second, and balance reads.

    python bench/loyalty_bench.py                      # defaults below
    python bench/loyalty_bench.py --appends 3000 --batch 200 --members 2000 --dir /var/tmp

Runs the plugin's own ``Store`` (SQLite, WAL) on a file in ``--dir`` (default:
the system temp dir; make sure it is a real disk, not tmpfs, or fsync is free):

* ``append_single``: one earning event per transaction, ``synchronous=FULL``
  (what a check-in, share or redemption costs: each one durable before it is
  answered);
* ``append_batched``: ``--batch`` events per transaction (what a tick's watch
  blocks and interactions cost);
* ``append_single_normal``: one per transaction with ``durable = false``
  (``synchronous=NORMAL``: durable at the next checkpoint, not per commit);
* ``redeem``: redemptions per second (each walks the member's lots for expiry);
* ``read_cached``: ``service.balance()`` + ``service.tier()`` from the cache;
* ``read_sqlite``: a member row read on a read connection (a cache miss);
* ``read_ledger_sum``: the balance derived from the ledger (``SUM`` over the
  member's entries), for a member with ``--history`` entries.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "loyalty"))

from edge_loyalty.config import parse_config  # noqa: E402
from edge_loyalty.service import Loyalty  # noqa: E402
from edge_loyalty.store import Reader, Store, verify  # noqa: E402

T0 = 1_741_996_800.0


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def bench_appends(path: Path, args: argparse.Namespace, durable: bool, batch: int) -> dict[str, float]:
    store = Store(path, parse_config({"durable": durable}))
    rng = random.Random(1)
    events = 0
    start = time.perf_counter()
    at = T0
    if batch <= 1:
        for i in range(args.appends):
            at += 1
            store.earn(f"m{rng.randrange(args.members)}", "watch", at, points=1, growth=1, event_id=f"w:{path.name}:{i}", cap=0)
            events += 1
    else:
        for b in range(0, args.appends, batch):
            items = []
            for i in range(b, min(b + batch, args.appends)):
                at += 1
                items.append({"identity": f"m{rng.randrange(args.members)}", "rule": "watch", "at": at,
                              "points": 1, "growth": 1, "event_id": f"w:{path.name}:{i}", "cap": 0})
            store.earn_many(items)
            events += len(items)
    elapsed = time.perf_counter() - start
    rows = store.db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    store.close()
    return {"events_per_s": rate(events, elapsed), "ledger_rows_per_s": rate(rows, elapsed), "events": events, "seconds": round(elapsed, 3)}


def bench_redeem(path: Path, args: argparse.Namespace) -> dict[str, float]:
    store = Store(path, parse_config({}))
    count = min(args.appends, 1000)
    start = time.perf_counter()
    ok = 0
    for i in range(count):
        out = store.redeem(f"m{i % args.members}", 1, f"bench-order-{i}", T0 + args.appends + 10 + i)
        ok += out.status == "redeemed"
    elapsed = time.perf_counter() - start
    store.close()
    return {"redeems_per_s": rate(count, elapsed), "redeemed": ok, "seconds": round(elapsed, 3)}


async def bench_cached(path: Path, args: argparse.Namespace) -> dict[str, float]:
    svc = Loyalty(parse_config({}))
    await svc.start(path)
    try:
        for i in range(args.members):  # warm the cache
            svc.balance(f"m{i}")
        n = args.reads
        start = time.perf_counter()
        for i in range(n):
            identity = f"m{i % args.members}"
            svc.balance(identity)
            svc.tier(identity)
        elapsed = time.perf_counter() - start
    finally:
        await svc.stop()
    return {"reads_per_s": rate(n, elapsed), "us_per_read": round(elapsed / n * 1e6, 2)}


def bench_sqlite_reads(path: Path, args: argparse.Namespace) -> dict[str, float]:
    reader = Reader(path)
    n = args.reads
    start = time.perf_counter()
    for i in range(n):
        reader.member(f"m{i % args.members}")
    elapsed = time.perf_counter() - start
    reader.close()
    return {"reads_per_s": rate(n, elapsed), "us_per_read": round(elapsed / n * 1e6, 2)}


def bench_ledger_sum(path: Path, args: argparse.Namespace) -> dict[str, float]:
    store = Store(path, parse_config({"durable": False}))
    store.earn_many([
        {"identity": "heavy", "rule": "watch", "at": T0 + i, "points": 1, "growth": 1, "event_id": f"h:{i}", "cap": 0}
        for i in range(args.history)
    ])
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        cached, summed = verify(store.db, "heavy")
    elapsed = time.perf_counter() - start
    assert cached == summed == (args.history, args.history)
    store.close()
    return {"reads_per_s": rate(n, elapsed), "us_per_read": round(elapsed / n * 1e6, 1), "entries": args.history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=200_000)
    parser.add_argument("--history", type=int, default=5000, help="entries of the member whose balance is summed")
    parser.add_argument("--dir", default=None, help="where the database files go (a real disk)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loyalty-bench-", dir=args.dir))
    try:
        out: dict[str, object] = {"bench": "loyalty_ledger", "dir": str(work), "cpus": os.cpu_count()}
        out["append_single"] = bench_appends(work / "single.sqlite3", args, durable=True, batch=1)
        out["append_batched"] = bench_appends(work / "batched.sqlite3", args, durable=True, batch=args.batch)
        out["append_batched"]["batch"] = args.batch  # type: ignore[index]
        out["append_single_normal"] = bench_appends(work / "normal.sqlite3", args, durable=False, batch=1)
        out["redeem"] = bench_redeem(work / "batched.sqlite3", args)
        out["read_cached"] = asyncio.run(bench_cached(work / "batched.sqlite3", args))
        out["read_sqlite"] = bench_sqlite_reads(work / "batched.sqlite3", args)
        out["read_ledger_sum"] = bench_ledger_sum(work / "heavy.sqlite3", args)
        print(json.dumps(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
