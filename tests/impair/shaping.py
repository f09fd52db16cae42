"""Per-direction shaping of one host's link: rate, loss, delay and jitter.

Each knob uses what works on this kernel (no sch_netem here):

=========  ==================================================================
rate       ``tbf`` qdisc on the sending end of the direction (host ``eth0``
           for *up*, the bridge port for *down*): a real bottleneck that
           queues up to ``queue_ms`` of data and then drops (tail drop)
loss       nftables rule ``numgen random mod 10000 < p*100 drop`` in the
           bridge's namespace (bridge family, forward hook, matched on the
           host's bridge port). Not in the host: a drop in the host's output
           hook fails the sender's ``sendto`` with EPERM, which no real
           network does; a drop on the bridge is silent.
delay,     iptables ``NFQUEUE`` (output/input of ``eth0``) + the userspace
jitter     delayer (impair/delayer.py) in the host's namespace; or, where the
           kernel has netem, a netem qdisc (``EDGE_TEST_DELAY_BACKEND`` =
           ``auto`` (default) | ``nfqueue`` | ``netem``)
=========  ==================================================================

Order along a direction: *up* = delay → rate → loss; *down* = loss → rate →
delay. Every knob can be changed while traffic flows (``Direction.set``).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .netns import PREFIX, repo_root, sh

if TYPE_CHECKING:
    from .netns import NetNs
    from .profiles import Phase, Profile

MTU_FRAME = 1514


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one direction of a link does to packets. Zero/None = that knob off."""

    rate_kbit: float | None = None  # bottleneck rate (tbf), kbit/s
    queue_ms: float = 100.0  # bottleneck buffer, in ms of data at rate_kbit (then tail drop)
    delay_ms: float = 0.0  # one-way delay added
    jitter_ms: float = 0.0  # ± spread of the delay
    distribution: str = "uniform"  # of the jitter: "uniform" | "normal"
    reorder: bool = False  # may jitter reorder packets? (see delayer.py)
    loss_percent: float = 0.0  # random loss, independent per packet

    def __post_init__(self) -> None:
        if self.rate_kbit is not None and self.rate_kbit <= 0:
            raise ValueError("rate_kbit must be > 0 (or None for unshaped)")
        if not 0 <= self.loss_percent <= 100:
            raise ValueError("loss_percent must be within 0..100")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.queue_ms <= 0:
            raise ValueError("delay_ms and jitter_ms must be >= 0, queue_ms > 0")
        if self.distribution not in ("uniform", "normal"):
            raise ValueError("distribution must be 'uniform' or 'normal'")


CLEAR = Impairment()


@functools.cache
def netem_available() -> bool:
    """Does this kernel have sch_netem? Probed once in a scratch namespace."""
    probe = f"{PREFIX}{os.getpid()}nprobe"
    sh("ip", "netns", "add", probe)
    try:
        out = subprocess.run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            check=False,
        )
        return out.returncode == 0
    finally:
        sh("ip", "netns", "delete", probe, check=False)


def delay_backend() -> str:
    choice = os.environ.get("EDGE_TEST_DELAY_BACKEND", "auto")
    if choice == "auto":
        return "netem" if netem_available() else "nfqueue"
    if choice not in ("nfqueue", "netem"):
        raise RuntimeError("EDGE_TEST_DELAY_BACKEND must be auto, nfqueue or netem")
    return choice


class DelayerProcess:
    """The userspace delayer of one namespace, configured over its stdin."""

    def __init__(self, host: "NetNs", queues: list[int]) -> None:
        argv = [sys.executable, "-m", "tests.impair.delayer"]
        for q in queues:
            argv += ["--queue", str(q)]
        self.proc = host.popen(
            argv,
            cwd=repo_root(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._expect("ready")

    def _expect(self, want: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != want:
            err = ""
            if not line and self.proc.stderr is not None:  # it died: say why (e.g. no NetfilterQueue)
                self.proc.wait(5)
                err = self.proc.stderr.read()[-2000:]
            raise RuntimeError(f"delayer said {line!r}, expected {want!r}: {err}")

    def configure(self, **settings: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(settings) + "\n")
        self.proc.stdin.flush()
        self._expect("ok")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the delayer exits on EOF
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


class Direction:
    """One direction of a host's link: ``up`` (host → network) or ``down``."""

    def __init__(self, link: "Link", name: str) -> None:
        self.link = link
        self.name = name
        host = link.host
        if name == "up":
            self.tc_ns, self.tc_dev = host.name, host.iface
            self.chain = f"{host.bridge_port}_up"
            self.ipt_chain, self.ipt_if, self.queue = "OUTPUT", "-o", 0
        else:
            self.tc_ns, self.tc_dev = host.network.bridge_ns, host.bridge_port
            self.chain = f"{host.bridge_port}_down"
            self.ipt_chain, self.ipt_if, self.queue = "INPUT", "-i", 1
        self.current = CLEAR
        self._nfqueue_rule = False
        self._tc_shape: tuple[bool, bool] = (False, False)  # (tbf, netem) installed
        self._dropped_before = 0

    # -- public -------------------------------------------------------------

    def set(self, impairment: Impairment | None = None, **changes: Any) -> Impairment:
        """Apply ``impairment`` (or the current one with ``changes``) now.

        ``down.set(rate_kbit=500)`` changes only the rate; a full Impairment
        replaces everything. Returns what is now in force.
        """
        new = impairment if impairment is not None else replace(self.current, **changes)
        old, self.current = self.current, new
        try:
            if new.loss_percent != old.loss_percent:
                self._apply_loss(new.loss_percent)
            if delay_backend() == "netem":
                self._apply_tc(new, netem=True)
            else:
                if (new.rate_kbit, new.queue_ms) != (old.rate_kbit, old.queue_ms):
                    self._apply_tc(new, netem=False)
                if (new.delay_ms, new.jitter_ms, new.distribution, new.reorder) != (
                    old.delay_ms, old.jitter_ms, old.distribution, old.reorder,
                ):
                    self._apply_nfqueue(new)
        except BaseException:
            self.current = old
            raise
        return new

    def clear(self) -> None:
        self.set(CLEAR)

    def dropped(self) -> int:
        """Packets the loss rule dropped in this direction so far (not tbf drops)."""
        return self._dropped_before + self._loss_counter()

    def tbf_drops(self) -> int:
        """Packets the rate limiter dropped (its queue was full)."""
        out = sh("tc", "-s", "qdisc", "show", "dev", self.tc_dev, netns=self.tc_ns)
        for line in out.splitlines():
            if "dropped" in line and "Sent" in line:
                return int(line.split("dropped", 1)[1].split(",")[0])
        return 0

    # -- knobs --------------------------------------------------------------

    def _apply_loss(self, percent: float) -> None:
        self._dropped_before += self._loss_counter()
        self.link.ensure_nft()
        rules = f"flush chain bridge {PREFIX} {self.chain}\n"
        if percent > 0:
            # numgen in 1/100 of a percent, so fractional percentages work. IP
            # only, and not ICMPv6 (neighbour discovery): ARP/ND are the LAN's
            # business, and losing them stalls a whole neighbour for a second
            # instead of losing packets independently.
            rules += (
                f"add rule bridge {PREFIX} {self.chain} ether type {{ ip, ip6 }} meta l4proto != ipv6-icmp "
                f"numgen random mod 10000 < {round(percent * 100)} counter drop\n"
            )
        sh("nft", "-f", "-", netns=self.link.host.network.bridge_ns, stdin=rules)  # one transaction

    def _loss_counter(self) -> int:
        if not self.link.nft_ready:
            return 0
        out = sh("nft", "list", "chain", "bridge", PREFIX, self.chain, netns=self.link.host.network.bridge_ns)
        for line in out.splitlines():
            if "counter packets" in line:
                return int(line.split("counter packets", 1)[1].split()[0])
        return 0

    def _tbf_args(self, imp: Impairment) -> list[str]:
        assert imp.rate_kbit is not None
        bytes_per_s = imp.rate_kbit * 1000 / 8
        # Burst: ~10 ms of data but at least two full frames (tbf needs >= MTU;
        # a small burst is what makes it behave like a real bottleneck).
        burst = max(2 * MTU_FRAME, int(bytes_per_s * 0.010))
        return ["tbf", "rate", f"{imp.rate_kbit}kbit", "burst", str(burst), "latency", f"{imp.queue_ms}ms"]

    def _netem_args(self, imp: Impairment) -> list[str]:
        args = ["netem", "delay", f"{imp.delay_ms}ms"]
        if imp.jitter_ms:
            args.append(f"{imp.jitter_ms}ms")
            if imp.distribution == "normal":
                args += ["distribution", "normal"]
        return args

    def _apply_tc(self, imp: Impairment, netem: bool) -> None:
        tbf = imp.rate_kbit is not None
        delay = netem and (imp.delay_ms > 0 or imp.jitter_ms > 0)
        tc = functools.partial(sh, netns=self.tc_ns)
        if (tbf, delay) == self._tc_shape:
            # Same tree: change in place, so queued packets stay queued.
            if tbf:
                tc("tc", "qdisc", "change", "dev", self.tc_dev, "root", "handle", "1:", *self._tbf_args(imp))
            if delay:
                where = ["parent", "1:1", "handle", "10:"] if tbf else ["root", "handle", "1:"]
                tc("tc", "qdisc", "change", "dev", self.tc_dev, *where, *self._netem_args(imp))
            return
        if self._tc_shape != (False, False):
            tc("tc", "qdisc", "del", "dev", self.tc_dev, "root", check=False)
        self._tc_shape = (False, False)
        if tbf:
            tc("tc", "qdisc", "add", "dev", self.tc_dev, "root", "handle", "1:", *self._tbf_args(imp))
            if delay:
                tc("tc", "qdisc", "add", "dev", self.tc_dev, "parent", "1:1", "handle", "10:", *self._netem_args(imp))
        elif delay:
            tc("tc", "qdisc", "add", "dev", self.tc_dev, "root", "handle", "1:", *self._netem_args(imp))
        self._tc_shape = (tbf, delay)

    def _apply_nfqueue(self, imp: Impairment) -> None:
        wanted = imp.delay_ms > 0 or imp.jitter_ms > 0
        if wanted:
            self.link.delayer().configure(
                queue=self.queue,
                delay_ms=imp.delay_ms,
                jitter_ms=imp.jitter_ms,
                distribution=imp.distribution,
                reorder=imp.reorder,
            )
        if wanted != self._nfqueue_rule:
            # --queue-bypass: if the delayer is gone, packets pass instead of dropping.
            op = "-A" if wanted else "-D"
            sh(
                "iptables", op, self.ipt_chain, self.ipt_if, self.link.host.iface,
                "-j", "NFQUEUE", "--queue-num", str(self.queue), "--queue-bypass",
                netns=self.link.host.name,
            )
            self._nfqueue_rule = wanted


class Link:
    """Both directions of one host's link. ``up``: host → network; ``down``: network → host."""

    def __init__(self, host: "NetNs") -> None:
        self.host = host
        self.up = Direction(self, "up")
        self.down = Direction(self, "down")
        self.nft_ready = False
        self._delayer: DelayerProcess | None = None

    def set(self, up: Impairment | None = None, down: Impairment | None = None) -> None:
        if up is not None:
            self.up.set(up)
        if down is not None:
            self.down.set(down)

    def apply(self, what: "Profile | Phase") -> None:
        """Apply a profile (its first phase) or one phase of a profile."""
        from .profiles import Profile

        phase = what.phases[0] if isinstance(what, Profile) else what
        self.set(up=phase.up, down=phase.down)

    def clear(self) -> None:
        self.set(CLEAR, CLEAR)

    def ensure_nft(self) -> None:
        if self.nft_ready:
            return
        # One table per bridge (its namespace), a pair of chains per host port.
        port = self.host.bridge_port
        sh(
            "nft", "-f", "-", netns=self.host.network.bridge_ns,
            stdin=(
                f"table bridge {PREFIX} {{\n"
                "  chain forward { type filter hook forward priority -10; policy accept; }\n"
                f"  chain {port}_up {{ }}\n"
                f"  chain {port}_down {{ }}\n"
                "}\n"
                f'add rule bridge {PREFIX} forward iifname "{port}" jump {port}_up\n'
                f'add rule bridge {PREFIX} forward oifname "{port}" jump {port}_down\n'
            ),
        )
        self.nft_ready = True

    def delayer(self) -> DelayerProcess:
        if self._delayer is None:
            self._delayer = DelayerProcess(self.host, [self.up.queue, self.down.queue])
        return self._delayer

    def close(self) -> None:
        # The namespace's deletion removes qdiscs and rules; the delayer is a
        # process of ours and must be stopped explicitly.
        if self._delayer is not None:
            self._delayer.close()
            self._delayer = None
