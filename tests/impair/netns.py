"""Hosts in network namespaces on one private /24, for tests with real links.

Topology of a :class:`Network` (all names carry the ``eimp<pid>`` prefix)::

    root namespace (the test process)     10.a.b.1  ──┐
    namespace <net>-br : bridge br0 ──────────────────┤ one veth per host
    namespace <net>-node   eth0 10.a.b.2  ────────────┤
    namespace <net>-viewer eth0 10.a.b.3  ────────────┘

The bridge lives in a namespace of its own, so the root namespace's firewall
(bridge netfilter, Docker's FORWARD policy) never sees the test traffic, and
every host's link has two ends we can shape: the host end (``eth0``, traffic
*leaving* the host) and the bridge end (traffic *towards* the host). The root
namespace gets an address too, so the test process can talk HTTP to a node
inside a namespace without entering it.

Everything is removed on exit, at interpreter exit (atexit) if a test forgot,
and namespaces left by a killed earlier run (their pid is dead) are removed
when the next Network starts.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
PREFIX = "eimp"  # every namespace and root-namespace interface starts with this
_ids = itertools.count()
_live: set["Network"] = set()


def sh(*argv: str, netns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    """Run a command (inside ``netns`` if given); raise with its stderr on failure."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    result = subprocess.run(full, input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed: {result.stderr.strip()}")
    return result.stdout


def require_root_tools() -> None:
    missing = [tool for tool in ("ip", "tc", "nft", "iptables") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        raise RuntimeError(
            "network impairment needs root and iproute2/nftables/iptables "
            f"(missing: {missing or 'root'}): run the README test command"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_namespace(name: str) -> None:
    # Processes still inside keep a namespace alive after `ip netns delete`:
    # kill what is left (only processes inside *our* namespace).
    for pid in sh("ip", "netns", "pids", name, check=False).split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "delete", name, check=False)


def cleanup_stale() -> list[str]:
    """Delete namespaces of ours whose creating process is dead. Returns their names."""
    removed = []
    for line in sh("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(PREFIX):
            continue
        digits = name[len(PREFIX) :].split("n", 1)[0]
        if digits.isdigit() and not _pid_alive(int(digits)):
            _delete_namespace(name)
            removed.append(name)
    return removed


def _used_subnets() -> set[str]:
    subnets = set()
    for ns in [None, *(line.split()[0] for line in sh("ip", "netns", "list", check=False).splitlines() if line.split())]:
        for line in sh("ip", "-4", "-o", "addr", "show", netns=ns, check=False).splitlines():
            parts = line.split()
            if "inet" in parts:
                addr = parts[parts.index("inet") + 1].split("/")[0]
                subnets.add(addr.rsplit(".", 1)[0])
    return subnets


def _pick_subnet(net_id: str) -> str:
    """A 10.x.y.0/24 no namespace on this machine uses yet (parallel runs differ)."""
    used = _used_subnets()
    seed = abs(hash((os.getpid(), net_id)))
    for i in range(64 * 256):
        n = (seed + i) % (64 * 256)
        candidate = f"10.{192 + n // 256}.{n % 256}"
        if candidate not in used:
            return candidate
    raise RuntimeError("no free 10.192-255.x.0/24 subnet for a test network")


class NetNs:
    """One host: a network namespace with ``eth0`` on the Network's /24 and ``lo`` up.

    ``link`` shapes its traffic in both directions (see impair.shaping.Link).
    """

    def __init__(self, network: "Network", host: str, name: str, address: str, port: str) -> None:
        self.network = network
        self.host = host
        self.name = name
        self.address = address
        self.iface = "eth0"
        self.bridge_port = port  # the bridge end of this host's veth, in network.bridge_ns
        from .shaping import Link

        self.link = Link(self)

    def argv(self, *argv: str) -> list[str]:
        """``argv`` prefixed to run inside this namespace (for Popen, Playwright, ...)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, stdin: str | None = None) -> str:
        return sh(*argv, netns=self.name, check=check, stdin=stdin)

    def popen(self, argv: list[str], **kwargs: Any) -> "subprocess.Popen[Any]":
        """Start a process inside the namespace (same environment, cwd and file arguments)."""
        return subprocess.Popen(self.argv(*argv), **kwargs)

    def exec_wrapper(self, executable: str) -> str:
        """Path of a script that runs ``executable`` (with its arguments) in this namespace.

        For launchers that take an executable path rather than an argv prefix:
        Playwright's ``chromium.launch(executable_path=ns.exec_wrapper("/usr/bin/chromium"))``
        runs the browser inside the namespace (Playwright talks to it over
        pipes, which cross namespaces). Removed with the Network.
        """
        path = Path(self.network.tmpdir) / f"{self.host}-{Path(executable).name}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {executable} "$@"\n')
        path.chmod(0o755)
        return str(path)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket that lives in this namespace, usable from any thread of this process.

        A namespace is a property of the *thread* that creates the socket, so
        we create it in a short-lived thread that first joins the namespace
        (setns); the socket keeps its namespace for life.
        """
        result: list[socket.socket | BaseException] = []

        def make() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{self.name}") as f:
                    if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                result.append(socket.socket(family, type))
            except BaseException as e:  # handed to the caller's thread
                result.append(e)

        thread = threading.Thread(target=make, name=f"setns-{self.name}")
        thread.start()
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def __repr__(self) -> str:
        return f"NetNs({self.name!r}, {self.address})"


class Network:
    """A private /24 with a bridge; ``host(name)`` adds a namespace on it.

    Use as a context manager; ``close()`` is idempotent and also runs at exit.
    """

    def __init__(self) -> None:
        require_root_tools()
        cleanup_stale()
        self.id = f"{PREFIX}{os.getpid()}n{next(_ids)}"
        self.bridge_ns = f"{self.id}-br"
        self.root_iface = f"{self.id}r"[-15:]  # interface names are at most 15 bytes
        self.hosts: dict[str, NetNs] = {}
        self.subnet = ""
        self.root_address = ""
        self.tmpdir = tempfile.mkdtemp(prefix=f"{self.id}-")
        self._closed = False

    def __enter__(self) -> "Network":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> "Network":
        _live.add(self)
        try:
            sh("ip", "netns", "add", self.bridge_ns)
            self.subnet = _pick_subnet(self.id)
            self.root_address = f"{self.subnet}.1"
            b = self.bridge_ns
            sh("ip", "link", "set", "lo", "up", netns=b)
            sh("ip", "link", "add", "br0", "type", "bridge", netns=b)
            sh("ip", "link", "set", "br0", "up", netns=b)
            # The root namespace's end: created in the bridge namespace (no name
            # clash with root interfaces while being built), then moved out.
            sh("ip", "link", "add", "root", "type", "veth", "peer", "name", "rootside", netns=b)
            sh("ip", "link", "set", "rootside", "master", "br0", "up", netns=b)
            sh("ip", "link", "set", "root", "name", self.root_iface, netns=b)
            sh("ip", "link", "set", self.root_iface, "netns", "1", netns=b)
            sh("ip", "addr", "add", f"{self.root_address}/24", "dev", self.root_iface)
            sh("ip", "link", "set", self.root_iface, "up")
        except BaseException:
            self.close()
            raise
        return self

    def host(self, name: str) -> NetNs:
        """Add a host namespace ``<net>-<name>`` with the next free address."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} already exists")
        index = len(self.hosts) + 2
        ns = f"{self.id}-{name}"
        port = f"h{index}"
        b = self.bridge_ns
        sh("ip", "netns", "add", ns)
        host = NetNs(self, name, ns, f"{self.subnet}.{index}", port)
        self.hosts[name] = host
        sh("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns, netns=b)
        sh("ip", "link", "set", port, "master", "br0", "up", netns=b)
        sh("ip", "link", "set", "lo", "up", netns=ns)
        sh("ip", "addr", "add", f"{host.address}/24", "dev", "eth0", netns=ns)
        sh("ip", "link", "set", "eth0", "up", netns=ns)
        return host

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            host.link.close()
            _delete_namespace(host.name)
        # Deleting the bridge namespace destroys the veth pairs, root end included.
        _delete_namespace(self.bridge_ns)
        sh("ip", "link", "delete", self.root_iface, check=False)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        _live.discard(self)

    def namespaces(self) -> list[str]:
        return [self.bridge_ns, *(h.name for h in self.hosts.values())]


def existing_namespaces() -> set[str]:
    return {line.split()[0] for line in sh("ip", "netns", "list", check=False).splitlines() if line.split()}


@atexit.register
def _close_all() -> None:
    for network in list(_live):
        network.close()


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
