"""pytest configuration for the benchmarks under bench/.

bench/ is not part of the CI test run: pyproject.toml sets ``testpaths =
["tests"]``, so a plain ``pytest`` from the repo root never collects anything
here. Run the benchmarks explicitly, e.g.::

    pytest bench/test_dataplane.py --benchmark-only
    pytest bench/ --benchmark-only --bench-sink=thread
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-sink",
        choices=("process", "thread"),
        default="process",
        help=(
            "who drains the loopback UDP sink the benchmarked data plane sends to: a "
            "thread in a helper process (default: the benchmark process keeps the GIL "
            "and one core to itself, as a node does whose viewers are other machines) "
            "or a thread in the benchmark process (shares the GIL with the data plane "
            "and adds GIL hand-offs to every packet; it also falls behind and lets the "
            "receive buffer overflow, see extra_info sink_lost)"
        ),
    )
