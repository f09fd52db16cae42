"""The fan-out benchmark harness (bench/fanout) still works: N=2 viewers, edge only.

The benchmark itself is not run in CI (it needs minutes and a quiet machine); this
keeps its parts from rotting: a real `edge serve`, a real WHIP publisher, two WHEP
viewers that complete ICE/DTLS and hand their sockets to the C counter, sampled
packets decrypted with each viewer's SRTP session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fanout_harness_counts_real_media_at_two_viewers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--configs", "edge-python", "--n", "2",
         "--warmup", "1", "--duration", "3", "--no-pin", "--nice", "0", "--json", str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [result] = json.loads(out.read_text())
    assert "error" not in result, result.get("error")
    assert result["viewers_receiving"] == 2
    # both viewers get the whole stream: ~314 RTP packets/s each (VP8 + Opus)
    assert result["per_viewer_pps_min"] > 200
    assert result["egress_packets"] > 0 and result["node_cpu_s"] > 0
    assert result["loss_pct"] is not None and result["loss_pct"] < 1.0
    assert result["decrypt_ok"] > 0 and result["decrypt_fail"] == 0
    assert result["latency_matched"] > 0
    assert "| edge-python | 2 | 2 |" in proc.stdout
