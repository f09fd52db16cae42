"""Python vs native ingress per packet (pytest-benchmark).

Run from the repo root::

    pytest bench/test_native_ingress.py --benchmark-only --benchmark-group-by=group

What PublisherSession does with each publisher packet before the fan-out,
on Chrome-like 1200-byte VP8 packets (mid + abs-send-time + transport-cc
extensions, a 15-bit picture id), protected beforehand by pylibsrtp's sender
as a publisher's libwebrtc would, then given once each (a packet can only be
unprotected once: a second time is a replay) to:

* ``python``: aiortc's pylibsrtp ``Session.unprotect`` (SSRC_ANY_INBOUND,
  window 1024), ``RtpHeader.parse``, the mid lookup and ``codecs.is_keyframe``;
* ``native``: ``SrtpReceiver.unprotect`` (native/srtp_rx.c, GIL released) and
  ``RtpParser.parse`` (header, extension values and keyframe in one call).

Groups: the whole ingress step, SRTP unprotect alone and parse + keyframe
alone, for AEAD_AES_128_GCM (Chrome's choice) and AES_CM_128_HMAC_SHA1_80.
``extra_info`` has µs per packet (median, min) and packets per core-second,
and the CPU-time figure (``cpu_us_per_packet``).
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Iterator

import pytest
from pylibsrtp import Policy, Session
from test_dataplane import CHROME_EXT_IDS, VP8_PT, chrome_vp8_packet  # bench/ is on sys.path

from edge.media import codecs
from edge.media.rtp import RtpHeader
from edge.transport.webrtc import EXT_MID

try:
    from edge.media import _native
except ImportError as exc:  # the bench must say so, not skip
    _native = None  # type: ignore[assignment]
    NATIVE_ERROR = str(exc)
else:
    NATIVE_ERROR = ""

PROFILES = {"AEAD_AES_128_GCM": (7, 28), "AES_CM_128_HMAC_SHA1_80": (1, 30)}
ROUNDS, ITERATIONS = 30, 1000
POOL = (ROUNDS + 3) * ITERATIONS  # + the warm-up / CPU-time pass and the first packet
MID_ID = CHROME_EXT_IDS[EXT_MID]


def _policy(key: bytes, profile: int, ssrc_type: int) -> Policy:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return policy


def protected_stream(profile: int, key: bytes, count: int) -> tuple[list[bytes], list[bytes]]:
    """`count` consecutive packets of one SSRC (through a sequence wrap), clear and protected."""
    sender = Session(_policy(key, profile, Policy.SSRC_ANY_OUTBOUND))
    ssrc, seq0, ts = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
    clear = [chrome_vp8_packet(ssrc, seq0 + i, ts + 3000 * (i // 8), keyframe=i % 240 == 0) for i in range(count)]
    return clear, [sender.protect(p) for p in clear]


def python_ingress(profile: int, key: bytes) -> Callable[[bytes], Any]:
    rx = Session(_policy(key, profile, Policy.SSRC_ANY_INBOUND))
    unprotect = rx.unprotect
    parse = RtpHeader.parse
    is_keyframe = codecs.is_keyframe

    def step(packet: bytes) -> Any:
        data = unprotect(packet)
        header = parse(data)
        mid = header.extensions.get(MID_ID)
        return header, mid, is_keyframe("vp8", data[header.payload_offset :])

    return step


def native_ingress(profile: int, key: bytes) -> Callable[[bytes], Any]:
    if _native is None:
        pytest.fail(f"the native data plane is not built: {NATIVE_ERROR}", pytrace=False)
    unprotect = _native.SrtpReceiver(profile, key).unprotect
    parse = _native.RtpParser(mid_id=MID_ID, codecs={VP8_PT: "vp8"}).parse

    def step(packet: bytes) -> Any:
        return parse(unprotect(packet))

    return step


def python_parse() -> Callable[[bytes], Any]:
    parse = RtpHeader.parse
    is_keyframe = codecs.is_keyframe

    def step(data: bytes) -> Any:
        header = parse(data)
        return header, header.extensions.get(MID_ID), is_keyframe("vp8", data[header.payload_offset :])

    return step


def _record(benchmark: Any, plane: str, profile_name: str, cpu_us: float) -> None:
    info = benchmark.extra_info
    info.update(plane=plane, srtp_profile=profile_name, packet_bytes=1200)
    stats = getattr(benchmark, "stats", None)
    if stats:
        s = stats.stats
        info["us_per_packet_median"] = round(s.median * 1e6, 3)
        info["us_per_packet_min"] = round(s.min * 1e6, 3)
        info["packets_per_core_second"] = round(1 / s.median)
    info["cpu_us_per_packet"] = round(cpu_us, 3)


def _run(benchmark: Any, step: Callable[[bytes], Any], packets: list[bytes]) -> float:
    """Time step over fresh packets; returns CPU µs per packet (one extra pass)."""
    feed: Iterator[bytes] = iter(packets)

    def one() -> Any:
        return step(next(feed))

    # Warm-up and CPU time on the first ITERATIONS packets, then the timed rounds.
    t0 = time.process_time()
    for _ in range(2 * ITERATIONS):
        one()
    cpu = (time.process_time() - t0) / (2 * ITERATIONS) * 1e6
    benchmark.pedantic(one, rounds=ROUNDS, iterations=ITERATIONS)
    return cpu


@pytest.mark.parametrize("profile_name", list(PROFILES))
@pytest.mark.parametrize("plane", ["python", "native"])
def test_ingress(benchmark: Any, plane: str, profile_name: str) -> None:
    """unprotect + parse + mid + keyframe, per packet."""
    benchmark.group = f"ingress: unprotect + parse + keyframe, {profile_name}"
    profile, key_len = PROFILES[profile_name]
    key = random.randbytes(key_len)
    clear, packets = protected_stream(profile, key, POOL)
    step = (python_ingress if plane == "python" else native_ingress)(profile, key)
    first = step(packets[0])  # the same answers, checked once
    if plane == "native":
        assert first[3] == VP8_PT and first[13] is True
    else:
        assert first[0].payload_type == VP8_PT and first[2] is True
    cpu = _run(benchmark, step, packets[1:])
    _record(benchmark, plane, profile_name, cpu)


@pytest.mark.parametrize("profile_name", list(PROFILES))
@pytest.mark.parametrize("plane", ["python", "native"])
def test_unprotect(benchmark: Any, plane: str, profile_name: str) -> None:
    benchmark.group = f"ingress: SRTP unprotect only, {profile_name}"
    profile, key_len = PROFILES[profile_name]
    key = random.randbytes(key_len)
    clear, packets = protected_stream(profile, key, POOL)
    if plane == "python":
        step = Session(_policy(key, profile, Policy.SSRC_ANY_INBOUND)).unprotect
    else:
        if _native is None:
            pytest.fail(f"the native data plane is not built: {NATIVE_ERROR}", pytrace=False)
        step = _native.SrtpReceiver(profile, key).unprotect
    assert step(packets[0]) == clear[0]
    cpu = _run(benchmark, step, packets[1:])
    _record(benchmark, plane, profile_name, cpu)


@pytest.mark.parametrize("plane", ["python", "native"])
def test_parse(benchmark: Any, plane: str) -> None:
    benchmark.group = "ingress: parse + mid + keyframe only"
    clear, _ = protected_stream(7, bytes(28), 1)
    if plane == "python":
        step = python_parse()
    else:
        if _native is None:
            pytest.fail(f"the native data plane is not built: {NATIVE_ERROR}", pytrace=False)
        step = _native.RtpParser(mid_id=MID_ID, codecs={VP8_PT: "vp8"}).parse
    data = clear[0]
    t0 = time.process_time()
    for _ in range(20000):
        step(data)
    cpu = (time.process_time() - t0) / 20000 * 1e6
    benchmark(step, data)
    _record(benchmark, plane, "-", cpu)
