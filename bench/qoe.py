"""QoE per weak-network profile: the issue's table, from a Chromium viewer.

For each profile (3G, lossy, very lossy, bandwidth drop, jitter) a real node,
a simulcast publisher (three VP8 layers) and headless Chromium run in their own
network namespaces, the profile on the viewer's link (tests/impair), and the
viewer's own getStats() says what it saw: freezes, decoded size (layer) over
time, audio concealment. Each run is checked against the issue's pass criteria
(tests/qoe/criteria.py) and the table is written into bench/RESULTS.md
(between the QoE markers) and printed.

    sudo .venv/bin/python bench/qoe.py [--runs 2] [--plane python|native|both] [--no-write]
                                       [--profile NAME ...] [--temporal]

``--temporal``: the publisher encodes each layer with three VP8 temporal layers
(as Chromium does; tests/simulcast_client.py TemporalVp8Encoder), so that the
node's first step down is to drop them. Such runs are printed, not written
(the table in RESULTS.md is the default publisher's).

Needs root (network namespaces), Chromium and the test extra (README's test
command installs them). Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.qoe import browser  # noqa: E402
from tests.qoe.criteria import CRITERIA, SCENARIOS  # noqa: E402

BEGIN, END = "<!-- qoe:begin -->", "<!-- qoe:end -->"


HEADER = [
    "| profile | plane | run | layers over time (s: layer) | freezes | freeze time | stall rate | audio concealed | criteria |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


async def measure(runs: int, plane: str, profiles: list[str] | None = None) -> list[str]:
    rows = []
    for name, scenario in SCENARIOS.items():
        if profiles and name not in profiles:
            continue
        for run in range(1, runs + 1):
            try:
                result = await browser.run(
                    scenario.profile, scenario.seconds, clear_at=scenario.clear_at, plane=plane,
                    join_clean=scenario.join_clean,
                )
            except Exception as exc:  # a run that never got going is a row too, not the end
                row = f"| {name} | {plane} | {run} | - | - | - | - | - | FAIL the run itself: {type(exc).__name__}: {str(exc)[:120]} |"
                print(row, flush=True)
                rows.append(row)
                continue
            checks = []
            for label, check in CRITERIA[name].items():
                ok, measured = check(result)
                checks.append(f"{'PASS' if ok else 'FAIL'} {label} ({measured})")
            layers = " ".join(f"{t}:{rid}" for t, rid in result.layers())
            s = result.summary()
            row = (
                f"| {name} | {plane} | {run} | {layers} | {s['freezes']} | {s['freeze_s']} s | "
                f"{s['stall_rate']:.1%} | {s['audio_concealed']:.1%} | {'<br>'.join(checks)} |"
            )
            print(row, flush=True)
            rows.append(row)
    return rows


def write(rows: list[str], runs: int, plane: str) -> None:
    path = REPO / "bench" / "RESULTS.md"
    text = path.read_text()
    block = "\n".join(
        [
            BEGIN,
            f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
            f"{platform.node()} ({platform.machine()}, kernel {platform.release()}, {os.cpu_count()} cores), "
            f"{runs} run(s) per profile, with `sudo .venv/bin/python bench/qoe.py --runs {runs} --plane {plane}`.",
            "",
            *HEADER,
            *rows,
            END,
        ]
    )
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Weak networks: QoE per profile (Chromium viewer)\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--plane", choices=["python", "native", "both"], default="both")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", action="append", choices=list(SCENARIOS), help="only these profiles (printed, not written)")
    ap.add_argument("--temporal", action="store_true", help="the publisher sends three VP8 temporal layers per layer")
    args = ap.parse_args()
    if args.temporal:
        os.environ["EDGE_TEST_TEMPORAL_LAYERS"] = "1"  # read by the publisher process (tests/impair/peer.py)
    planes = ["python", "native"] if args.plane == "both" else [args.plane]
    rows = [row for plane in planes for row in asyncio.run(measure(args.runs, plane, args.profile))]
    if not (args.no_write or args.profile or args.temporal):
        write(rows, args.runs, args.plane)


if __name__ == "__main__":
    main()
