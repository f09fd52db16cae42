"""Userspace delay + jitter for NFQUEUE'd packets (this kernel has no sch_netem).

Runs inside a host's namespace (``python -m tests.impair.delayer``), bound to
NFQUEUE numbers that iptables rules feed (``-j NFQUEUE --queue-num N
--queue-bypass``: with no delayer bound, packets pass undelayed instead of
being dropped). Each queue has its own settings, changed at runtime by JSON
lines on stdin, each answered by ``ok`` (or ``error: ...``) on stdout::

    {"queue": 0, "delay_ms": 75, "jitter_ms": 0, "distribution": "uniform", "reorder": false}

A packet is held for ``delay_ms`` plus a jitter sample, then accepted:

* ``uniform``: uniform in [-jitter, +jitter];
* ``normal``: gaussian with sigma = jitter, clipped to ±2 sigma;
* the total is clipped at 0 ms.

``reorder: false`` (the default) keeps packet order like a real path: a
packet is never released before the one queued ahead of it, so jitter shows up
as bursts after a slow packet (the spread of arrival times is kept, the
sequence is not). ``reorder: true`` releases each packet at its own time, as
netem does, so packets overtake each other.

Settings changes apply to packets queued after the change. The process exits
when stdin closes (its test ended or died), so it never outlives the test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from netfilterqueue import COPY_META, NetfilterQueue

DISTRIBUTIONS = ("uniform", "normal")


@dataclass
class QueueDelay:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: str = "uniform"
    reorder: bool = False
    # In-order mode: packets waiting, with their release times (non-decreasing).
    pending: collections.deque[tuple[float, Any]] = field(default_factory=collections.deque)
    timer: asyncio.TimerHandle | None = None
    last_release: float = 0.0

    def sample(self, rng: random.Random) -> float:
        jitter = 0.0
        if self.jitter_ms > 0:
            if self.distribution == "normal":
                jitter = max(-2 * self.jitter_ms, min(2 * self.jitter_ms, rng.gauss(0.0, self.jitter_ms)))
            else:
                jitter = rng.uniform(-self.jitter_ms, self.jitter_ms)
        return max(0.0, self.delay_ms + jitter) / 1000.0


class Delayer:
    def __init__(self, loop: asyncio.AbstractEventLoop, seed: int | None) -> None:
        self.loop = loop
        self.rng = random.Random(seed)
        self.queues: dict[int, QueueDelay] = {}
        self.nfqs: list[NetfilterQueue] = []

    def bind(self, queue: int) -> None:
        state = self.queues.setdefault(queue, QueueDelay())
        nfq = NetfilterQueue()

        def on_packet(pkt: Any) -> None:
            self.on_packet(state, pkt)

        # COPY_META: the verdict needs no payload; sock_len: room for bursts.
        nfq.bind(queue, on_packet, max_len=16384, mode=COPY_META, sock_len=8 * 1024 * 1024)
        self.loop.add_reader(nfq.get_fd(), lambda: nfq.run(block=False))
        self.nfqs.append(nfq)

    def on_packet(self, q: QueueDelay, pkt: Any) -> None:
        if q.delay_ms <= 0 and q.jitter_ms <= 0 and not q.pending:
            pkt.accept()
            return
        release = self.loop.time() + q.sample(self.rng)
        if q.reorder:
            self.loop.call_at(release, pkt.accept)
            return
        release = max(release, q.last_release)
        q.last_release = release
        q.pending.append((release, pkt))
        if q.timer is None:
            q.timer = self.loop.call_at(release, self.release, q)

    def release(self, q: QueueDelay) -> None:
        q.timer = None
        now = self.loop.time()
        while q.pending and q.pending[0][0] <= now + 0.0005:
            q.pending.popleft()[1].accept()
        if q.pending:
            q.timer = self.loop.call_at(q.pending[0][0], self.release, q)

    def configure(self, command: dict[str, Any]) -> None:
        queue = int(command["queue"])
        if queue not in self.queues:
            raise ValueError(f"queue {queue} is not bound")
        q = self.queues[queue]
        distribution = str(command.get("distribution", q.distribution))
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}")
        delay = float(command.get("delay_ms", q.delay_ms))
        jitter = float(command.get("jitter_ms", q.jitter_ms))
        if delay < 0 or jitter < 0:
            raise ValueError("delay_ms and jitter_ms must be >= 0")
        q.delay_ms, q.jitter_ms, q.distribution = delay, jitter, distribution
        q.reorder = bool(command.get("reorder", q.reorder))

    def close(self) -> None:
        for nfq in self.nfqs:
            self.loop.remove_reader(nfq.get_fd())
            nfq.unbind()
        # Packets still held are released by the kernel when the queue goes away
        # (--queue-bypass only covers "no listener"; unbinding drops the held ones).


async def serve(delayer: Delayer) -> None:
    reader = asyncio.StreamReader()
    await delayer.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        try:
            delayer.configure(json.loads(line))
            print("ok", flush=True)
        except (ValueError, KeyError, TypeError) as e:
            print(f"error: {e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--queue", type=int, action="append", required=True, help="NFQUEUE number (repeat)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    try:
        # The delayer models the network: it should not queue behind the CPU
        # work of the processes under test (best effort; needs root).
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass
    loop = asyncio.new_event_loop()
    delayer = Delayer(loop, args.seed)
    for queue in args.queue:
        delayer.bind(queue)
    try:
        loop.run_until_complete(serve(delayer))
    finally:
        delayer.close()


if __name__ == "__main__":
    main()
