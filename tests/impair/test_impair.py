"""The impairment fixture does what it says, measured with real traffic.

Every knob is checked by sending packets between two namespaces (sockets made
inside them from this process, so one clock times both ends) and counting or
timing what arrives, never by reading the configuration back.
"""

from __future__ import annotations

import math
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.impair import PROFILES, Impairment, NetNs, Network, cleanup_stale, existing_namespaces

from .netns import repo_root


@pytest.fixture
def net() -> Iterator[tuple[NetNs, NetNs]]:
    """``node`` and ``viewer`` hosts; impairments go on the viewer's link."""
    with Network() as network:
        yield network.host("node"), network.host("viewer")


def udp_pair(src: NetNs, dst: NetNs, rcvbuf: int = 8 << 20) -> tuple[socket.socket, socket.socket, tuple[str, int]]:
    tx = src.socket()
    tx.bind((src.address, 0))
    rx = dst.socket()
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    rx.bind((dst.address, 0))
    return tx, rx, rx.getsockname()


@dataclass
class Arrivals:
    """Datagrams a receiver thread saw: (sequence, sent_at, arrived_at, size)."""

    sock: socket.socket
    got: list[tuple[int, float, float, int]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> "Arrivals":
        def loop() -> None:
            self.sock.settimeout(0.1)
            while True:
                try:
                    data = self.sock.recv(65535)
                except TimeoutError:
                    if self.done.is_set():  # stopped, and nothing left to drain
                        break
                    continue
                if data == b"end":
                    break
                seq, sent = int(data[:10]), float(data[10:30])
                self.got.append((seq, sent, time.monotonic(), len(data)))
            self.done.set()

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def send_paced(tx: socket.socket, dst: tuple[str, int], rate_kbit: float, seconds: float, size: int, first_seq: int = 0) -> int:
    """Send ``size``-byte datagrams at ``rate_kbit`` (payload rate) for ``seconds``; returns the count."""
    interval = size * 8 / (rate_kbit * 1000)
    count = int(seconds / interval)
    start = time.monotonic()
    for i in range(count):
        target = start + i * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the sender is the point here
        tx.sendto(b"%010d%020.6f" % (first_seq + i, time.monotonic()) + b"\0" * (size - 30), dst)
    return count


def echo_rtts(client: NetNs, server: NetNs, probes: int, interval: float = 0.02) -> list[float]:
    """Round-trip times (ms) of UDP echoes client → server → client; lost probes are left out."""
    srv = server.socket()
    srv.bind((server.address, 0))
    stop = threading.Event()

    def echo() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(2048)
            except TimeoutError:
                continue
            srv.sendto(data, peer)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    cli = client.socket()
    cli.bind((client.address, 0))
    arrivals = Arrivals(cli).run()
    for i in range(probes):
        cli.sendto(b"%010d%020.6f" % (i, time.monotonic()), srv.getsockname())
        time.sleep(interval)  # probe spacing
    time.sleep(0.5)  # the last echoes are still in flight (up to RTT + jitter)
    arrivals.stop()
    stop.set()
    thread.join()
    cli.close()
    srv.close()
    return [(arrived - sent) * 1000 for _, sent, arrived, _ in arrivals.got]


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sd, n * p + sigmas * sd


def test_unimpaired_link_is_fast_and_lossless(net: tuple[NetNs, NetNs]) -> None:
    node, viewer = net
    rtts = echo_rtts(viewer, node, 50, interval=0.002)
    assert len(rtts) == 50
    assert statistics.median(rtts) < 5


def test_3g_profile_round_trip_time(net: tuple[NetNs, NetNs]) -> None:
    node, viewer = net
    viewer.link.apply(PROFILES["3G"])
    rtts = echo_rtts(viewer, node, 60)
    assert len(rtts) >= 45, "far more than 2 % + 2 % of the echoes were lost"
    assert PROFILES["3G"].rtt_ms == 150
    assert 148 <= statistics.median(rtts) <= 175, rtts
    assert min(rtts) >= 149


@pytest.mark.parametrize(("direction", "percent"), [("down", 10), ("up", 30)])
def test_random_loss_per_direction(net: tuple[NetNs, NetNs], direction: str, percent: float) -> None:
    node, viewer = net
    getattr(viewer.link, direction).set(loss_percent=percent)
    src, dst = (node, viewer) if direction == "down" else (viewer, node)
    tx, rx, addr = udp_pair(src, dst)
    arrivals = Arrivals(rx).run()
    n = 3000
    send_paced(tx, addr, 8000, n * 200 * 8 / 8_000_000, 200)  # 3000 datagrams in 0.6 s
    tx.sendto(b"end", addr)  # may itself be lost: the timeout below ends the wait then
    arrivals.thread.join(2)
    arrivals.stop()
    lost = n - len(arrivals.got)
    low, high = binomial_bounds(n, percent / 100)
    assert low <= lost <= high, f"{lost} of {n} lost, expected {percent} %"
    other = viewer.link.up if direction == "down" else viewer.link.down
    assert other.dropped() == 0
    assert abs(getattr(viewer.link, direction).dropped() - lost) <= 1  # 'end' may be one of them


def test_loss_changes_at_runtime_and_turns_off(net: tuple[NetNs, NetNs]) -> None:
    node, viewer = net
    tx, rx, addr = udp_pair(node, viewer)
    results = []
    for percent in (30, 0, 10):
        viewer.link.down.set(loss_percent=percent)
        arrivals = Arrivals(rx).run()
        send_paced(tx, addr, 8000, 0.4, 200)  # 2000 datagrams
        time.sleep(0.1)  # let the last datagrams land (no delay on this link)
        arrivals.stop()
        results.append((percent, 2000 - len(arrivals.got)))
    for percent, lost in results:
        low, high = binomial_bounds(2000, percent / 100)
        assert low <= lost <= high, results
    assert results[1][1] == 0


def received_rate_kbit(arrivals: Arrivals, skip_s: float) -> float:
    """Steady-state arrival rate in kbit/s of Ethernet frames (what tbf meters)."""
    times = [a for _, _, a, _ in arrivals.got]
    t0 = times[0] + skip_s
    window = [(a, size) for _, _, a, size in arrivals.got if a >= t0]
    frame_bytes = sum(size + 42 for _, size in window[1:])  # + UDP/IP/Ethernet headers
    return frame_bytes * 8 / (window[-1][0] - window[0][0]) / 1000


def test_rate_limit_queues_drops_and_changes_at_runtime(net: tuple[NetNs, NetNs]) -> None:
    """5 Mbit/s → 500 kbit/s → 5 Mbit/s (the bandwidth-drop profile), with a 2x overload."""
    node, viewer = net
    profile = PROFILES["bandwidth drop"]
    tx, rx, addr = udp_pair(node, viewer)
    rates = []
    seq = 0
    for phase in profile.phases:
        viewer.link.apply(phase)
        target = phase.down.rate_kbit
        assert target is not None
        drops_before = viewer.link.down.tbf_drops()
        arrivals = Arrivals(rx).run()
        seq += send_paced(tx, addr, target * 2, 1.5, 1000, seq)
        time.sleep(0.25)  # drain the bottleneck queue (up to queue_ms of data)
        arrivals.stop()
        rates.append((target, received_rate_kbit(arrivals, skip_s=0.3)))
        assert viewer.link.down.tbf_drops() > drops_before, "a 2x overload must overflow the queue"
    for target, measured in rates:
        assert 0.85 * target <= measured <= 1.1 * target, rates


def test_bottleneck_queue_adds_delay_up_to_its_size(net: tuple[NetNs, NetNs]) -> None:
    """A 1 Mbit/s link with 100 ms of buffer: an overload waits ≈100 ms, not seconds."""
    node, viewer = net
    viewer.link.down.set(rate_kbit=1000, queue_ms=100)
    tx, rx, addr = udp_pair(node, viewer)
    arrivals = Arrivals(rx).run()
    send_paced(tx, addr, 2000, 1.0, 1000)
    time.sleep(0.3)
    arrivals.stop()
    late = [(arrived - sent) * 1000 for _, sent, arrived, _ in arrivals.got[len(arrivals.got) // 2 :]]
    assert 70 <= statistics.median(late) <= 140, statistics.median(late)


def one_way_delays(src: NetNs, dst: NetNs, count: int, interval: float) -> list[tuple[int, float]]:
    tx, rx, addr = udp_pair(src, dst)
    arrivals = Arrivals(rx).run()
    send_paced(tx, addr, 100 * 8 / interval / 1000, count * interval, 100)
    time.sleep(0.25)
    arrivals.stop()
    return [(seq, (arrived - sent) * 1000) for seq, sent, arrived, _ in arrivals.got]


def test_jitter_profile_keeps_order_by_default(net: tuple[NetNs, NetNs]) -> None:
    node, viewer = net
    viewer.link.apply(PROFILES["jitter"])  # media path 50 ± 30 ms
    got = one_way_delays(node, viewer, 150, 0.02)
    assert len(got) == 150
    seqs = [s for s, _ in got]
    assert seqs == sorted(seqs), "in-order jitter must not reorder"
    delays = [d for _, d in got]
    assert min(delays) >= 19.5
    # Percentiles, not max: a userspace delayer on a loaded 2-core machine
    # sometimes runs a timer late (the fixture's own noise, not the profile's).
    p5, p95 = statistics.quantiles(delays, n=20)[0], statistics.quantiles(delays, n=20)[-1]
    assert p95 <= 90 and p95 - p5 > 25, (p5, p95)
    assert 45 <= statistics.mean(delays) <= 70  # order-keeping pushes the mean up a little


def test_jitter_with_reordering_has_the_configured_distribution(net: tuple[NetNs, NetNs]) -> None:
    node, viewer = net
    viewer.link.down.set(Impairment(delay_ms=50, jitter_ms=30, reorder=True))
    got = one_way_delays(node, viewer, 300, 0.01)
    assert len(got) == 300
    delays = [d for _, d in got]
    assert 45 <= statistics.mean(delays) <= 62
    assert 30 / math.sqrt(3) - 5 <= statistics.stdev(delays) <= 30 / math.sqrt(3) + 6  # uniform ±30
    assert min(delays) >= 19.5 and statistics.quantiles(delays, n=20)[-1] <= 90
    seqs = [s for s, _ in got]
    assert seqs != sorted(seqs), "packets 10 ms apart with ±30 ms jitter must overtake"
    # Back to no delay at runtime: the NFQUEUE rule goes, packets flow direct.
    viewer.link.down.clear()
    assert statistics.median(d for _, d in one_way_delays(node, viewer, 50, 0.005)) < 3


def test_cleanup_on_exception_removes_namespaces_and_delayer() -> None:
    with pytest.raises(RuntimeError, match="body failed"):
        with Network() as network:
            viewer = network.host("viewer")
            network.host("node")
            viewer.link.apply(PROFILES["3G"])
            delayer = viewer.link.delayer().proc
            names = network.namespaces()
            root_iface = network.root_iface
            assert set(names) <= existing_namespaces()
            raise RuntimeError("body failed")
    assert not set(names) & existing_namespaces()
    assert delayer.poll() is not None
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert root_iface not in links


def test_namespaces_of_a_killed_run_are_removed_by_the_next() -> None:
    script = (
        "from tests.impair import Network, PROFILES\n"
        "net = Network().open(); h = net.host('viewer'); h.link.apply(PROFILES['3G'])\n"
        "print(','.join(net.namespaces()), flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=repo_root(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    names = proc.stdout.readline().strip().split(",")
    proc.send_signal(signal.SIGKILL)  # no atexit, no context exit
    proc.wait()
    proc.stdout.close()
    assert set(names) <= existing_namespaces()
    removed = cleanup_stale()
    assert set(names) <= set(removed)
    assert not set(names) & existing_namespaces()


async def test_chromium_runs_inside_a_namespace_through_its_link(net: tuple[NetNs, NetNs]) -> None:
    """Playwright + Debian Chromium launched via exec_wrapper: its traffic leaves
    from the viewer's address and takes the viewer's (delayed) link."""
    from playwright.async_api import async_playwright

    node, viewer = net
    page_server = node.popen(
        [sys.executable, "-m", "http.server", "--bind", node.address, "8000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    viewer.link.up.set(delay_ms=100)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=viewer.exec_wrapper("/usr/bin/chromium"),
                headless=True,
                args=["--no-sandbox", "--disable-gpu"],
            )
            page = await browser.new_page()
            # Chromium sees the namespace's link being shaped as a network change:
            # it aborts its first navigation (ERR_NETWORK_CHANGED) or reloads the
            # page by itself; the page to use is the one it ends up on.
            for attempt in range(5):
                try:
                    if not page.url.startswith(f"http://{node.address}:8000/"):
                        await page.goto(f"http://{node.address}:8000/", wait_until="load")
                    await page.wait_for_load_state("load")
                    break
                except Exception as exc:
                    changed = ("ERR_NETWORK_CHANGED", "interrupted by another navigation", "context was destroyed")
                    if not any(x in str(exc) for x in changed) or attempt == 4:
                        raise
            # A fetch can be cut by the same network-change reaction: try again.
            rtt = await page.evaluate(
                """async (url) => {
                     for (let i = 0; ; i++) {
                       const t = performance.now();
                       try { await fetch(url, {cache: "no-store"}); return performance.now() - t; }
                       catch (e) { if (i >= 4) throw e; await new Promise(r => setTimeout(r, 200)); }
                     }
                   }""",
                f"http://{node.address}:8000/",
            )
            await browser.close()
    finally:
        page_server.terminate()
        _, log = page_server.communicate(timeout=10)
    assert f"{viewer.address} - -" in log, log  # the request came from the viewer's namespace
    assert rtt >= 100, rtt  # and crossed the viewer's link, 100 ms each way up


def rate_between(arrivals: Arrivals, start: float, t0: float, t1: float) -> float:
    """kbit/s of frames that arrived between start+t0 and start+t1."""
    frames = [size + 42 for _, _, arrived, size in arrivals.got if start + t0 <= arrived < start + t1]
    return sum(frames) * 8 / (t1 - t0) / 1000


async def test_play_runs_a_profile_schedule_on_live_traffic(net: tuple[NetNs, NetNs]) -> None:
    """`bandwidth drop` at 1/20 speed: 5 Mbit/s, 500 kbit/s at 0.5 s, 5 Mbit/s at 1 s,
    under a steady 2 Mbit/s stream: the stream passes, is squeezed, passes again."""
    import asyncio

    from tests.impair import play

    node, viewer = net
    tx, rx, addr = udp_pair(node, viewer)
    arrivals = Arrivals(rx).run()
    start = time.monotonic()
    sender = asyncio.to_thread(send_paced, tx, addr, 2000, 1.5, 500)
    await asyncio.gather(sender, play(viewer.link, PROFILES["bandwidth drop"], time_scale=0.05))
    await asyncio.sleep(0.2)  # let the queue drain
    arrivals.stop()
    before = rate_between(arrivals, start, 0.1, 0.45)
    during = rate_between(arrivals, start, 0.7, 0.95)
    after = rate_between(arrivals, start, 1.25, 1.5)
    assert 1700 <= before <= 2400, (before, during, after)
    assert 400 <= during <= 600, (before, during, after)
    assert 1700 <= after <= 2400, (before, during, after)
