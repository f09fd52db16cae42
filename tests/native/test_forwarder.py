"""NativeConsumer is a Forwarder: same outputs and state as edge/media/forwarder.py.

Random operation sequences (map with gaps, reordering, wraps, keyframes; switch
with a new clock rate; direct state writes as the control plane may do) run on
a Python Forwarder and on a NativeConsumer with Python's ``random`` seeded the
same, and every result and every attribute is compared after each step.
"""

from __future__ import annotations

import random
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.media.forwarder import Forwarder

STATE = ("video", "clock_rate", "source", "seq_offset", "ts_offset", "last_seq", "last_ts",
         "last_wall", "started", "floor_seq", "key_seq", "vp8_sync", "pic_offset", "tl0_offset", "last_pic", "last_tl0", "waiting_for_keyframe")

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("map"),
            st.one_of(st.just(1), st.integers(-5, 8), st.integers(-40000, 40000)),  # seq step
            st.one_of(st.just(3000), st.integers(-100000, 100000), st.integers(0, 2**32 - 1)),  # ts step
            st.booleans(),  # keyframe
            st.one_of(st.just(0.02), st.floats(-1.0, 5.0), st.floats(0, 1e6)),  # time step
        ),
        st.tuples(st.just("switch"), st.sampled_from(["a", "b", "c"]), st.sampled_from([8000, 48000, 90000])),
        st.tuples(st.just("set_last_seq"), st.one_of(st.none(), st.integers(0, 65535))),
    ),
    max_size=60,
)


def native_consumer(video: bool, clock_rate: int) -> object:
    from edge.media import _native

    return _native.NativeConsumer(
        ssrc=1, profile=7, key=bytes(28), fd=-1, address=("127.0.0.1", 9), video=video,
        clock_rate=clock_rate, ring_size=16,
    )


def run(fwd: object, seed: int, video: bool, seq0: int, ts0: int, now0: float, steps: list[tuple]) -> list[object]:
    random.seed(seed)
    out: list[object] = []
    seq, ts, now = seq0, ts0, now0
    for op in steps:
        if op[0] == "map":
            seq, ts, now = (seq + op[1]) & 0xFFFF, (ts + op[2]) & 0xFFFFFFFF, now + op[4]
            out.append(fwd.map(seq, ts, op[3], now))  # type: ignore[attr-defined]
        elif op[0] == "switch":
            fwd.switch(op[1], op[2])  # type: ignore[attr-defined]
        else:
            fwd.last_seq = op[1]  # type: ignore[attr-defined]
            if op[1] is None:
                fwd.started = False  # type: ignore[attr-defined]
        out.append(tuple(getattr(fwd, name) for name in STATE))
    return out


@settings(max_examples=400, deadline=None)
@given(
    video=st.booleans(),
    seed=st.integers(0, 2**32),
    seq0=st.integers(0, 65535),
    ts0=st.integers(0, 2**32 - 1),
    now0=st.floats(0, 2e9),
    steps=ops,
)
def test_native_consumer_maps_like_the_forwarder(
    video: bool, seed: int, seq0: int, ts0: int, now0: float, steps: list[tuple]
) -> None:
    py = Forwarder(video=video, clock_rate=90000)
    nat = native_consumer(video, 90000)
    py.switch("a", 90000)
    nat.switch("a", 90000)  # type: ignore[attr-defined]
    expected = run(py, seed, video, seq0, ts0, now0, steps)
    assert run(nat, seed, video, seq0, ts0, now0, steps) == expected


def test_forwarder_interface_and_unit_cases() -> None:
    """The cases of tests/unit/test_forwarding_state.py, on the native object."""
    f = native_consumer(True, 90000)
    assert f.waiting_for_keyframe  # type: ignore[attr-defined]
    f.switch("p1", 90000)  # type: ignore[attr-defined]
    assert f.map(100, 1000, keyframe=False, now=0.0) is None  # type: ignore[attr-defined]
    s0, t0 = f.map(101, 1000, keyframe=True, now=1.0)  # type: ignore[attr-defined]
    s1, t1 = f.map(102, 4000, keyframe=False, now=1.0)  # type: ignore[attr-defined]
    assert (s1 - s0) & 0xFFFF == 1 and (t1 - t0) & 0xFFFFFFFF == 3000
    last, last_ts = f.map(103, 7000, keyframe=False, now=1.033)  # type: ignore[attr-defined]
    f.switch("cohost", 90000)  # type: ignore[attr-defined]
    assert f.source == "cohost" and f.waiting_for_keyframe  # type: ignore[attr-defined]
    assert f.map(60000, 999999, keyframe=False, now=1.5) is None  # type: ignore[attr-defined]
    seq, ts = f.map(60001, 999999, keyframe=True, now=1.533)  # type: ignore[attr-defined]
    assert seq == (last + 1) & 0xFFFF
    assert (ts - last_ts) & 0xFFFFFFFF == int(0.5 * 90000)


def test_native_consumer_owns_a_dup_of_the_socket() -> None:
    from edge.media import _native

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    nc = _native.NativeConsumer(
        ssrc=5, profile=1, key=bytes(30), fd=sock.fileno(), address=sink.getsockname(),
        video=False, clock_rate=48000, ring_size=8,
    )
    sock.close()  # the transport's socket goes away: ours still works
    nc.ring_put(7, b"retransmit me")
    assert nc.retransmit([7, 8, 7]) == 2
    assert sink.recv(100) == b"retransmit me" and sink.recv(100) == b"retransmit me"
    assert nc.sending
    nc.close()
    assert not nc.sending
    assert nc.retransmit([7]) == 1  # served (counted) but not sent: the socket is closed
    sink.settimeout(0.2)
    try:
        extra = sink.recv(100)
    except socket.timeout:
        extra = None
    assert extra is None
    sink.close()
