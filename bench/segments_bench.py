"""Segment evaluation over synthetic viewer events: events per second and memory.

    python bench/segments_bench.py                       # 1,000,000 events, every mode
    python bench/segments_bench.py --events 200000 --mode engine

One synthetic stream (seeded, so runs compare) of joins, chat/like
interactions, product clicks, WHEP watch sessions (start + end), paid orders
and pins, from ``--viewers`` viewers in ``--rooms`` rooms, spread over
``--days`` simulated days, so every kind of transition happens (high-value
prospects crossing the watch threshold, new buyers' windows closing, viewers
going dormant). The node ticks once a second; the bench ticks (collects
time-driven transitions, and in the store and plugin modes commits) once per
``--tick-events`` events, i.e. it models a node taking in that many events a
second (default 1000), whatever the simulated clock says.

Modes (each on a fresh state, one after the other):

- ``engine``: ``edge_segments.engine.Engine`` alone: the O(1) per-event profile
  update and segment evaluation, in memory.
- ``store``: the engine plus SQLite (WAL) persistence as the plugin does it:
  every event appended to the log and the changed profiles written in one
  transaction per simulated second.
- ``plugin``: the whole plugin through its hooks (``SegmentsPlugin`` on a stub
  facade): presence (at most ``--concurrent`` viewers present; a join beyond
  makes the longest-present one leave), event log, metrics, transitions
  recorded and their actions run (coupons, notifications), targeted coupons on
  pins, profiles leaving memory after a simulated idle hour and coming back
  from SQLite on their next event or when a segment falls due.

Figures: wall-clock and CPU time of this process (``events_per_cpu_s`` is
what compares on a machine shared with other work).

Memory: the process's resident set size (VmRSS) before and after each mode
(engine and store: every profile stays in memory for the whole run), plus Python's own
peak allocations (tracemalloc) from a separate, smaller run of the engine.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "segments"))

from edge_segments.engine import Engine, Rules  # noqa: E402

T0 = 1_750_000_000.0

# (kind, weight): the mix of a live-commerce room
MIX = (("interaction", 40), ("click", 25), ("join", 10), ("watch", 15), ("order", 4), ("pin", 1),
       ("refund", 0))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def synthetic(events: int, viewers: int, rooms: int, skus: int, days: float, seed: int) -> Iterator[tuple[Any, ...]]:
    """``(kind, at, room, identity, sku, extra)`` in time order."""
    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    step = days * 86400.0 / events
    # a few heavy viewers and a long tail, as in real rooms
    weights = [1.0 / (i + 1) ** 0.8 for i in range(viewers)]
    identities = [f"v{i}" for i in range(viewers)]
    picks = rng.choices(range(viewers), weights=weights, k=events)
    for n in range(events):
        at = T0 + n * step
        i = picks[n]
        kind = rng.choice(kinds)
        room = f"room{i % rooms}"
        sku = f"sku{int(rng.paretovariate(1.2)) % skus}"
        if kind == "watch":
            yield ("watch", at, room, identities[i], sku, rng.uniform(60, 3600))
        elif kind == "order":
            yield ("order", at, room, identities[i], sku, rng.randint(1_000_000, 200_000_000))
        else:
            yield (kind, at, room, identities[i], sku, None)


def _rates(events: int, start: float, cpu: float) -> dict[str, Any]:
    """Wall and CPU figures: on a shared machine the CPU ones are what compare."""
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_s": round(wall, 3), "cpu_s": round(used, 3), "events_per_s": round(events / wall),
            "events_per_cpu_s": round(events / used)}


def run_engine(stream: list[tuple[Any, ...]], tick: int) -> dict[str, Any]:
    engine = Engine(Rules())
    transitions = 0
    start, cpu = time.perf_counter(), time.process_time()
    for n, (kind, at, room, identity, sku, extra) in enumerate(stream):
        if n % tick == 0:
            transitions += len(engine.advance(at))
        if kind == "interaction":
            transitions += len(engine.interaction(room, identity, at))
        elif kind == "click":
            transitions += len(engine.click(room, identity, sku, at))
        elif kind == "join":
            transitions += len(engine.seen(room, identity, at)[1])
        elif kind == "watch":
            # the session ran [at - length, at]: its start and end, node-measured
            transitions += len(engine.watch_started(room, identity, at - extra))
            transitions += len(engine.watch_ended(room, identity, at - extra, at))
        elif kind == "order":
            transitions += len(engine.order_paid(room, identity, sku, extra, at)[1])
        elif kind == "pin":
            engine.targeted(room, sku)
    transitions += len(engine.advance(stream[-1][1] + 1.0))
    return {**_rates(len(stream), start, cpu), "transitions": transitions, "profiles": len(engine.profiles),
            "engine": engine}


def run_store(stream: list[tuple[Any, ...]], path: Path, tick: int) -> dict[str, Any]:
    from edge_segments.store import Store

    store = Store(path)
    engine = Engine(Rules())
    log: list[tuple[Any, ...]] = []
    transitions = flushes = 0

    def flush() -> None:
        profiles, skus = engine.take_dirty()
        store.flush(profiles, log, skus)
        log.clear()

    start, cpu = time.perf_counter(), time.process_time()
    for n, (kind, at, room, identity, sku, extra) in enumerate(stream):
        if n % tick == 0:
            transitions += len(engine.advance(at))
            flush()
            flushes += 1
        if kind == "interaction":
            transitions += len(engine.interaction(room, identity, at))
        elif kind == "click":
            transitions += len(engine.click(room, identity, sku, at))
        elif kind == "join":
            transitions += len(engine.seen(room, identity, at)[1])
        elif kind == "watch":
            transitions += len(engine.watch_started(room, identity, at - extra))
            transitions += len(engine.watch_ended(room, identity, at - extra, at))
        elif kind == "order":
            transitions += len(engine.order_paid(room, identity, sku, extra, at)[1])
        if kind != "pin":
            log.append((at, room, identity, kind, sku, ""))
    flush()
    rates = _rates(len(stream), start, cpu)
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    store.close()
    return {**rates, "transitions": transitions, "flushes": flushes, "db_mib": round(size / 2**20, 1)}


class StubEdge:
    """The facade as the plugin sees it, minus the network: sends are counted."""

    def __init__(self, data_dir: Path) -> None:
        from prometheus_client import CollectorRegistry

        self._dir = data_dir
        self.metrics_registry = CollectorRegistry()
        self.services: dict[str, Any] = {}
        self.sent = 0
        self.emitted = 0

    def data_dir(self, plugin: str) -> Path:
        path = self._dir / plugin
        path.mkdir(parents=True, exist_ok=True)
        return path

    def logger(self, plugin: str) -> Any:
        import structlog

        return structlog.get_logger(plugin)

    def provide(self, name: str, service: Any) -> None:
        self.services[name] = service

    def service(self, name: str) -> Any:
        return self.services.get(name)

    def emit(self, name: str, data: dict[str, Any], *, source: str) -> None:
        self.emitted += 1

    def send_to(self, room: str, identity: str, type: str, data: dict[str, Any], **kw: Any) -> int:
        self.sent += 1
        return 1

    def broadcast(self, room: str, type: str, data: dict[str, Any], **kw: Any) -> int:
        return 1

    def participants(self, room: str) -> list[Any]:
        return []


async def run_plugin(
    stream: list[tuple[Any, ...]], data_dir: Path, tick: int, concurrent: int
) -> dict[str, Any]:
    from edge.plugins.api import ParticipantInfo, SessionInfo
    from edge_segments.plugin import SegmentsPlugin

    clock = [stream[0][1]]
    edge = StubEdge(data_dir)
    plugin = SegmentsPlugin(clock=lambda: clock[0])
    # every viewer stays in memory (the bench measures evaluation, not reloads)
    # idle profiles leave memory after a simulated hour (what --days of history allows)
    plugin.edge_configure(edge, {"idle_seconds": 3600, "sweep_seconds": 3600})
    plugin.edge_startup(edge)
    viewers: dict[str, ParticipantInfo] = {}
    here: OrderedDict[tuple[str, str], ParticipantInfo] = OrderedDict()  # present viewers, oldest first
    orders = ticks = 0
    start, cpu = time.perf_counter(), time.process_time()
    for n, (kind, at, room, identity, sku, extra) in enumerate(stream):
        clock[0] = at
        if n % tick == 0:
            plugin.edge_tick(edge, at)
            ticks += 1
            if plugin.tasks:
                await asyncio.sleep(0)  # let the notification tasks run
        participant = viewers.get(identity)
        if participant is None:
            participant = viewers[identity] = ParticipantInfo(identity, "viewer")
        if kind == "interaction":
            plugin._transitions(plugin.engine.interaction(room, identity, at))  # as a chat.send does
            plugin._log_event(at, room, identity, "interaction", value="chat.send")
        elif kind == "click":
            plugin.edge_event(edge, "commerce.product_click", {"room": room, "sku": sku, "viewer": identity, "at": at},
                              "commerce")
        elif kind == "join":
            if (room, identity) in here:
                continue
            plugin.edge_participant_joined(edge, room, participant)
            here[(room, identity)] = participant
            if len(here) > concurrent:  # the longest-present viewer leaves
                (old_room, _), old = here.popitem(last=False)
                plugin.edge_participant_left(edge, old_room, old)
        elif kind == "watch":
            sid = f"s{n}"
            started = SessionInfo(sid, "whep", room, identity, at - extra - 0.2, at - extra)
            plugin.edge_session_started(edge, room, participant, started)
            ended = SessionInfo(sid, "whep", room, identity, at - extra - 0.2, at - extra, at, "delete")
            plugin.edge_session_ended(edge, room, participant, ended)
        elif kind == "order":
            orders += 1
            plugin.edge_event(edge, "commerce.order_paid", {
                "room": room, "order_id": f"o{n}", "buyer": identity, "sku": sku,
                "amount_base": f"{extra / 1e6:.2f}", "at": at}, "commerce")
        elif kind == "pin":
            plugin.edge_event(edge, "commerce.product_pinned", {"room": room, "sku": sku, "at": at}, "commerce")
    plugin.edge_tick(edge, clock[0] + 1.0)
    while plugin.tasks:
        await asyncio.gather(*list(plugin.tasks))
    rates = _rates(len(stream), start, cpu)
    coupons = plugin.store.db.execute("SELECT reason, COUNT(*) FROM coupons GROUP BY reason").fetchall()
    await plugin.edge_shutdown(edge)
    return {**rates, "ticks": ticks, "profiles_in_memory_at_end": len(plugin.engine.profiles),
            "notifications_sent": edge.sent,
            "domain_events_emitted": edge.emitted, "coupons": dict(coupons), "orders": orders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--viewers", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--skus", type=int, default=500)
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tick-events", type=int, default=1000, help="events between two ticks")
    parser.add_argument("--concurrent", type=int, default=5000,
                        help="plugin mode: viewers present at once (a join beyond makes the oldest leave)")
    parser.add_argument("--mode", choices=("all", "engine", "store", "plugin"), default="all")
    args = parser.parse_args()

    stream = list(synthetic(args.events, args.viewers, args.rooms, args.skus, args.days, args.seed))
    # The synthetic stream (millions of objects) is input, not the work measured: keep the
    # cyclic garbage collector from scanning it again and again.
    gc.collect()
    gc.freeze()
    counts: dict[str, int] = {}
    for event in stream:
        counts[event[0]] = counts.get(event[0], 0) + 1
    # a watch is two hook calls (session start and end): count them as two events
    hook_events = len(stream) + counts.get("watch", 0)
    out: dict[str, Any] = {
        "events": len(stream), "hook_events": hook_events, "viewers": args.viewers, "rooms": args.rooms,
        "skus": args.skus, "days": args.days, "tick_events": args.tick_events, "concurrent": args.concurrent,
        "mix": counts, "python": sys.version.split()[0],
    }
    modes = ("engine", "store", "plugin") if args.mode == "all" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="segments-bench-") as tmp:
        for mode in modes:
            gc.collect()
            before = rss_mib()
            if mode == "engine":
                result = run_engine(stream, args.tick_events)
                engine = result.pop("engine")
                result["rss_growth_mib"] = round(rss_mib() - before, 1)
                profiles = max(1, len(engine.profiles))
                result["bytes_per_profile_rss"] = round(result["rss_growth_mib"] * 2**20 / profiles)
                del engine
            elif mode == "store":
                result = run_store(stream, Path(tmp) / "store.sqlite3", args.tick_events)
                result["rss_growth_mib"] = round(rss_mib() - before, 1)
            else:
                result = asyncio.run(run_plugin(stream, Path(tmp) / "plugin", args.tick_events, args.concurrent))
                result["rss_growth_mib"] = round(rss_mib() - before, 1)
            result["hook_events_per_cpu_s"] = round(result["events_per_cpu_s"] * hook_events / len(stream))
            out[mode] = result
            gc.collect()
        # Python-level allocations of the engine state, on a tenth of the stream
        tenth = stream[: max(1, len(stream) // 10)]
        tracemalloc.start()
        small = run_engine(tenth, args.tick_events)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_engine_tenth"] = {
            "events": len(tenth), "profiles": small["profiles"], "current_mib": round(current / 2**20, 1),
            "peak_mib": round(peak / 2**20, 1), "bytes_per_profile": round(current / max(1, small["profiles"])),
        }
    out["rss_final_mib"] = round(rss_mib(), 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
