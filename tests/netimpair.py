"""Real packet impairment for tests, with what this kernel has (no netem).

* loss: an nftables rule ``numgen random mod 100 < N drop`` (this module),
  on loopback, for one UDP port: the smallest tool for "this viewer loses 5 %".

For whole hosts with shaped links (rate, loss, delay, jitter per direction,
profiles like 3G, changed at runtime) use the tests/impair package
(docs/impairment.md).

Rules live in a table of their own, removed on exit, so a failed test leaves
nothing behind. Needs root and the `nft` binary (the README test command
installs nftables).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

_ids = itertools.count()


def nft(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["nft", *args], input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def require_nft() -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        raise RuntimeError(
            "network impairment needs root and nftables: run the README test command"
        )


class UdpLoss:
    """Drop ``percent`` % of UDP datagrams sent to ``dport`` (any local sender)."""

    def __init__(self, dport: int, percent: int) -> None:
        require_nft()
        self.table = f"edge_test_{os.getpid()}_{next(_ids)}"
        self.dport = dport
        self.percent = percent

    def __enter__(self) -> "UdpLoss":
        nft(
            "-f",
            "-",
            stdin=(
                f"table inet {self.table} {{\n"
                "  chain out {\n"
                "    type filter hook output priority 0; policy accept;\n"
                f"    udp dport {self.dport} numgen random mod 100 < {self.percent} counter drop\n"
                "  }\n"
                "}\n"
            ),
        )
        return self

    def dropped(self) -> int:
        out = nft("list", "table", "inet", self.table)
        for line in out.splitlines():
            if "counter packets" in line:
                return int(line.split("counter packets", 1)[1].split()[0])
        return 0

    def __exit__(self, *exc: object) -> None:
        nft("delete", "table", "inet", self.table)
