"""Flash-sale reservations through the real message path: reservations/s and answer latency.

    python bench/flashsale_bench.py --backend sqlite --clients 200 --attempts 20000
    python bench/flashsale_bench.py --backend redis --clients 200 --attempts 20000

A real `edge serve` with only the flash-sale plugin (pinned to CPU 0) and, for
`--backend redis`, a real redis-server (appendonly, appendfsync always, as in
production). A load-generator process (pinned to CPU 1) opens N WebSocket
viewers, each with its own identity, and each keeps `--window` `sale.reserve`
messages in flight (a new one as soon as an answer arrives) until `--attempts`
are answered. Every attempt has its own idempotency key. The sale's stock
defaults to 90% of the attempts, so it sells out near the end and the check is
exact: accepted == stock, the stored orders == the accepted, nothing oversold.

Reported (one JSON line): answers/s and accepted reservations/s over the run
(first send to last answer), p50/p95/p99/max answer latency (send to reply, the
same machine clock), accepted vs stock, the stored orders and counters read back
over REST, node CPU seconds, and how many hook calls ran over the plugin budget.
Rate limits are lifted in the node's config for the run (a viewer's normal
`sale.reserve` limit is 10 per 10 s).

`--direct` measures the inventory alone: `FlashSales` over the backend in this
process (no node, no WebSockets), the same clients/attempts/stock, to show how
much of the figure above is the backend and how much the message path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOM = "bench"
SKU = "bench-sku"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


# the load generator (a process of its own) -------------------------------------------------


async def load(url: str, tokens: list[str], attempts: int, window: int) -> dict:
    import orjson
    import websockets

    clients = len(tokens)
    share = [attempts // clients + (1 if i < attempts % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    counts = {"accepted": 0, "rejected": 0, "error": 0}
    reasons: dict[str, int] = {}
    order_ids: set[str] = set()
    conns = []
    for start in range(0, clients, 100):  # connect in waves
        conns += await asyncio.gather(*(
            websockets.connect(url + t, ping_interval=None, max_queue=None, open_timeout=60)
            for t in tokens[start:start + 100]
        ))
    await asyncio.sleep(0.5)  # let the greetings (sale.info) arrive and drain
    gate = asyncio.Event()
    first_send = [0.0]
    last_answer = [0.0]

    async def client(i: int, ws) -> None:  # type: ignore[no-untyped-def]
        todo = share[i]
        sent = 0
        inflight: dict[str, float] = {}
        await gate.wait()

        async def send_one() -> None:
            nonlocal sent
            msg_id = f"{sent:x}"
            key = f"c{i}-{sent}"
            sent += 1
            inflight[msg_id] = time.perf_counter()
            # a text frame (bytes would go out as a binary frame, which the node refuses)
            await ws.send('{"type":"sale.reserve","id":"' + msg_id + '","data":{"sku":"' + SKU +
                          '","quantity":1,"key":"' + key + '"}}')

        while sent < todo and len(inflight) < window:
            await send_one()
        done = 0
        async for raw in ws:
            if '"reply_to"' not in raw:
                continue  # room broadcasts: stock.updated, sold_out, ...
            env = orjson.loads(raw)
            data = env["data"]
            started = inflight.pop(data.get("reply_to"), None)
            if started is None:
                continue
            now = time.perf_counter()
            latencies.append(now - started)
            kind = env["type"]
            if kind == "order.accepted":
                counts["accepted"] += 1
                order_ids.add(data["order_id"])
            elif kind == "order.rejected":
                counts["rejected"] += 1
                reasons[data["reason"]] = reasons.get(data["reason"], 0) + 1
            else:
                counts["error"] += 1
                reasons[data.get("code", kind)] = reasons.get(data.get("code", kind), 0) + 1
            last_answer[0] = max(last_answer[0], now)
            done += 1
            if sent < todo:
                await send_one()
            if done == todo:
                return

    tasks = [asyncio.ensure_future(client(i, ws)) for i, ws in enumerate(conns)]
    print("READY", flush=True)
    await asyncio.sleep(0.2)
    first_send[0] = time.perf_counter()
    gate.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    elapsed = last_answer[0] - first_send[0]
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else -1

    return {
        "answers": len(latencies),
        **counts,
        "reasons": reasons,
        "distinct_order_ids": len(order_ids),
        "elapsed_s": round(elapsed, 3),
        "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
    }


def run_load(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})
    tokens = json.loads(Path(args.tokens).read_text())
    before = time.process_time()
    result = asyncio.run(load(args.url, tokens, args.attempts, args.window))
    result["loadgen_cpu_s"] = round(time.process_time() - before, 3)
    print("RESULT " + json.dumps(result), flush=True)


# the harness -----------------------------------------------------------------------------------


async def direct(backend: str, clients: int, attempts: int, stock: int, work: Path, redis_url: str) -> dict:
    from edge_flashsale.redis_backend import RedisInventory
    from edge_flashsale.service import FlashSales
    from edge_flashsale.sqlite_backend import SqliteInventory

    inventory = (SqliteInventory(work / "flashsale.db") if backend == "sqlite"
                 else RedisInventory(redis_url, work / "flashsale.db"))
    service = FlashSales(inventory)
    await service.start()
    now = time.time()
    sale = await service.create_sale(ROOM, SKU, stock=stock, per_user_limit=min(stock, 1_000_000),
                                     starts_at=now - 1, ends_at=now + 3600)
    share = [attempts // clients + (1 if i < attempts % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    accepted = 0

    async def client(i: int) -> None:
        nonlocal accepted
        for n in range(share[i]):
            start = time.perf_counter()
            outcome = await service.reserve(ROOM, SKU, f"buyer{i}", 1, f"c{i}-{n}")
            latencies.append(time.perf_counter() - start)
            accepted += outcome.accepted

    cpu = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    counters = await service.counters(sale.sale_id)
    await service.inventory.sync()
    stored = len(await service.orders(sale.sale_id))
    await service.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "mode": "direct", "backend": backend, "clients": clients, "attempts": attempts, "stock": stock,
        "answers_per_s": round(attempts / elapsed), "reservations_per_s": round(accepted / elapsed),
        "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
        "accepted": accepted, "stored_orders": stored, "oversold": max(0, accepted - stock),
        "exact": accepted == min(stock, attempts) == stored and counters.remaining == stock - accepted,
        "cpu_s_this_process": round(cpu, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--attempts", type=int, default=20000)
    parser.add_argument("--stock", type=int, default=None, help="default: 90%% of --attempts")
    parser.add_argument("--window", type=int, default=1, help="reserve messages in flight per client")
    parser.add_argument("--direct", action="store_true", help="the inventory alone, in-process (no node)")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(args)
        return
    import signal

    # Stopped from outside (timeout, Ctrl-C): still stop the node and redis-server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))

    import subprocess

    import httpx

    from tests.flashsale.redisproc import RedisServer
    from tests.nodeproc import NodeProcess

    stock = args.stock if args.stock is not None else max(1, args.attempts * 9 // 10)
    work = Path(tempfile.mkdtemp(prefix="edge-fs-bench-"))
    redis = None
    lines = [
        "[limits]", "messages_per_connection = 100000000", "max_viewers_per_room = 100000",
        "[plugins.flashsale]", f'backend = "{args.backend}"', f'db_path = "{work / "flashsale.db"}"',
        "reserve_rate = [100000000, 1]",
    ]
    if args.backend == "redis":
        redis = RedisServer(work / "redis").start()
        lines.append(f'redis_url = "{redis.url}"')
    if args.direct:
        import uvloop

        try:
            result = uvloop.run(direct(args.backend, args.clients, args.attempts, stock, work,
                                       redis.url if redis is not None else ""))
        finally:
            if redis is not None:
                redis.stop()
        print(json.dumps(result))
        if not result["exact"]:
            sys.exit("oversell/undersell check FAILED")
        return
    conf = work / "bench.toml"
    conf.write_text("\n".join(lines) + "\n")
    node = NodeProcess(env={"EDGE_CONFIG": str(conf), "EDGE_LOG_LEVEL": "warning",
                            "EDGE_LOAD_PLUGINS": "flashsale"}).start()
    api = f"{node.url}/v1/plugins/flashsale/rooms/{ROOM}/sales"
    host = {"Authorization": "Bearer " + node.token(ROOM, "seller", "host")}
    try:
        assert node.proc is not None
        os.sched_setaffinity(node.proc.pid, {0})
        for _ in range(200):
            status = httpx.get(node.url + "/v1/plugins/flashsale/status", headers=node.admin_headers()).json()
            if status["ready"]:
                break
            time.sleep(0.05)
        sale = httpx.post(api, headers=host, json={
            "sku": SKU, "stock": stock, "per_user_limit": min(stock, 1_000_000), "starts_in": 0,
            "duration": 3600,
        }).json()
        tokens = [node.token(ROOM, f"buyer{i}", "viewer") for i in range(args.clients)]
        token_file = work / "tokens.json"
        token_file.write_text(json.dumps(tokens))
        ws_url = f"ws://127.0.0.1:{node.port}/v1/rooms/{ROOM}/ws?token="
        cmd = [sys.executable, __file__, "--load", "--url", ws_url, "--tokens", str(token_file),
               "--attempts", str(args.attempts), "--window", str(args.window)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        cpu_start = None
        result = None
        for line in proc.stdout:
            if line.startswith("READY"):
                cpu_start = cpu_seconds(node.proc.pid)
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
        proc.wait()
        cpu = cpu_seconds(node.proc.pid) - (cpu_start or 0.0)
        assert result is not None, "the load generator failed"
        counters = httpx.get(f"{api}/{sale['sale_id']}", headers=host).json()
        orders = httpx.get(f"{api}/{sale['sale_id']}/orders", headers=host, timeout=60).json()["orders"]
        timeouts = sum(v for k, v in node.metrics().items()
                       if k.startswith("edge_plugin_timeouts_total") and 'plugin="flashsale"' in k)
        accepted = result["accepted"]
        expect = min(stock, args.attempts)
        result.update(
            backend=args.backend,
            clients=args.clients,
            attempts=args.attempts,
            window=args.window,
            stock=stock,
            answers_per_s=round(result["answers"] / result["elapsed_s"]) if result["elapsed_s"] else None,
            reservations_per_s=round(accepted / result["elapsed_s"]) if result["elapsed_s"] else None,
            stored_orders=len(orders),
            counters={k: counters[k] for k in ("sold", "reserved", "remaining", "orders")},
            oversold=max(0, accepted - stock),
            exact=(accepted == expect == len(orders) == result["distinct_order_ids"]
                   and counters["remaining"] == stock - accepted),
            node_cpu_s=round(cpu, 3),
            hook_timeouts=int(timeouts),
        )
        print(json.dumps(result))
        if not result["exact"]:
            sys.exit("oversell/undersell check FAILED")
    finally:
        node.stop()
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    main()
