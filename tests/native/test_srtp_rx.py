"""Native SRTP/SRTCP unprotect == pylibsrtp's, byte for byte and refusal for refusal.

The reference is what aiortc receives with: a pylibsrtp 1.0.0 (libsrtp 2.7)
Session for SSRC_ANY_INBOUND with a 1024-packet window. Both sides get the
same delivery schedule of packets protected by pylibsrtp's sender: random
profiles, keys, headers (CSRCs, both extension forms) and sequence-number walks
(in order, through 65535 -> 0 so the rollover counter moves, reordered,
jumps past half the space, beyond the replay window), then deliveries that
repeat (replays: refused by both), arrive late, are tampered with (one bit
flipped anywhere, truncated) or are random bytes. SRTCP: random compound
bodies, indexes delivered out of order and past libsrtp's 128-entry window.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpLibError
from pylibsrtp import Policy, Session

from .rig import tx_policy

PROFILES = [
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
]
KEY_LENGTHS = {1: 30, 2: 30, 7: 28, 8: 44}

steps = st.one_of(
    st.just(1),
    st.integers(-3, 5),
    st.integers(-1100, -900),  # around the edge of the replay window
    st.integers(30000, 36000),  # more than half the space: the ROC guess
    st.integers(-65535, 65535),
)


def outcome(call: object, packet: bytes) -> object:
    try:
        return ("ok", call(packet))  # type: ignore[operator]
    except SrtpLibError as exc:  # the native SrtpError subclasses it
        return ("refused", str(exc))
    except (ValueError, TypeError) as exc:
        return (type(exc).__name__, str(exc))


def rx_pair(profile: int, key: bytes) -> tuple[Session, object]:
    from edge.media import _native

    return Session(tx_policy(key, profile, Policy.SSRC_ANY_INBOUND)), _native.SrtpReceiver(profile, key)


@st.composite
def rtp_packets(draw: st.DrawFn) -> list[bytes]:
    ssrcs = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3, unique=True))
    seqs = {ssrc: draw(st.integers(0, 65535)) for ssrc in ssrcs}
    out = []
    for _ in range(draw(st.integers(1, 40))):
        ssrc = draw(st.sampled_from(ssrcs))
        seqs[ssrc] = (seqs[ssrc] + draw(steps)) & 0xFFFF
        csrcs = draw(st.lists(st.integers(0, 2**32 - 1), max_size=2))
        ext = b""
        if draw(st.booleans()):
            words = draw(st.integers(0, 3))
            ext = struct.pack("!HH", draw(st.sampled_from([0xBEDE, 0x1000, 0x1234])), words)
            ext += draw(st.binary(min_size=4 * words, max_size=4 * words))
        first = 0x80 | (0x10 if ext else 0) | len(csrcs)
        header = struct.pack("!BBHII", first, draw(st.integers(0, 127)), seqs[ssrc], 7, ssrc)
        header += b"".join(struct.pack("!I", c) for c in csrcs) + ext
        out.append(header + draw(st.binary(max_size=300)))
    return out


def mangle(draw: st.DrawFn, packet: bytes) -> bytes:
    how = draw(st.sampled_from(["flip", "truncate", "random"]))
    if how == "flip":
        pos = draw(st.integers(0, len(packet) - 1))
        return packet[:pos] + bytes([packet[pos] ^ (1 << draw(st.integers(0, 7)))]) + packet[pos + 1 :]
    if how == "truncate":
        return packet[: draw(st.integers(0, len(packet) - 1))]
    return draw(st.binary(max_size=80))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), items=rtp_packets(), data=st.data())
def test_unprotect_matches_pylibsrtp(profile: int, items: list[bytes], data: st.DataObject) -> None:
    key = data.draw(st.binary(min_size=KEY_LENGTHS[profile], max_size=KEY_LENGTHS[profile]))
    sender = Session(tx_policy(key, profile))
    protected = []
    for packet in items:
        try:
            protected.append(sender.protect(packet))
        except SrtpLibError:  # older than the sender's window: never sent
            pass
    if not protected:
        return
    # Delivery: each packet in order, sometimes a replay, a late one, or garbage.
    schedule = []
    for i, packet in enumerate(protected):
        schedule.append(packet)
        extra = data.draw(st.sampled_from(["none", "none", "replay", "late", "mangled"]))
        if extra == "replay":
            schedule.append(packet)
        elif extra == "late":
            schedule.append(protected[data.draw(st.integers(0, i))])
        elif extra == "mangled":
            schedule.append(mangle(data.draw, packet))
    reference, native = rx_pair(profile, key)
    for packet in schedule:
        assert outcome(native.unprotect, packet) == outcome(reference.unprotect, packet)  # type: ignore[attr-defined]


@settings(max_examples=30, deadline=None)
@given(profile=st.sampled_from(PROFILES), start=st.integers(64000, 65535), data=st.data())
def test_rollover_and_reordering_across_the_wrap(profile: int, start: int, data: st.DataObject) -> None:
    """2000 packets through 65535 -> 0 (ROC 0 -> 1), locally shuffled; replays refused."""
    key = data.draw(st.binary(min_size=KEY_LENGTHS[profile], max_size=KEY_LENGTHS[profile]))
    sender = Session(tx_policy(key, profile))
    clear = [struct.pack("!BBHII", 0x80, 96, (start + i) & 0xFFFF, i, 0xBEEF) + bytes([i & 0xFF]) * 40 for i in range(2000)]
    protected = [sender.protect(p) for p in clear]
    order = list(range(2000))
    rnd = data.draw(st.randoms())
    # Reordered within runs of 50 after the first 50 (a stream's very first
    # packets fix its rollover counter: libsrtp, and so the native receiver,
    # would refuse a post-wrap packet that arrived first).
    for i in range(50, 2000, 50):
        chunk = order[i : i + 50]
        rnd.shuffle(chunk)
        order[i : i + 50] = chunk
    reference, native = rx_pair(profile, key)
    for i in order:
        got = outcome(native.unprotect, protected[i])  # type: ignore[attr-defined]
        assert got == outcome(reference.unprotect, protected[i])
        assert got == ("ok", clear[i])
    for i in rnd.sample(range(2000), 20):  # replays of accepted packets
        got = outcome(native.unprotect, protected[i])  # type: ignore[attr-defined]
        assert got == outcome(reference.unprotect, protected[i])
        assert got[0] == "refused"
    assert native.rtp_ok == 2000 and native.rtp_failed == 20  # type: ignore[attr-defined]


@st.composite
def rtcp_packets(draw: st.DrawFn) -> list[bytes]:
    ssrcs = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=2, unique=True))
    out = []
    for _ in range(draw(st.integers(1, 200))):
        words = draw(st.integers(1, 12))
        body = draw(st.binary(min_size=4 * words - 4, max_size=4 * words - 4))
        ptype = draw(st.sampled_from([200, 201, 202, 205, 206]))
        out.append(struct.pack("!BBHI", 0x81, ptype, words, draw(st.sampled_from(ssrcs))) + body)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), items=rtcp_packets(), data=st.data())
def test_unprotect_rtcp_matches_pylibsrtp(profile: int, items: list[bytes], data: st.DataObject) -> None:
    key = data.draw(st.binary(min_size=KEY_LENGTHS[profile], max_size=KEY_LENGTHS[profile]))
    sender = Session(tx_policy(key, profile))
    protected = [sender.protect_rtcp(p) for p in items]
    schedule = list(protected)
    rnd = data.draw(st.randoms())
    for i in range(0, len(schedule), 20):  # reorder within 20
        chunk = schedule[i : i + 20]
        rnd.shuffle(chunk)
        schedule[i : i + 20] = chunk
    for _ in range(data.draw(st.integers(0, 15))):  # replays, very late ones, garbage
        pick = protected[data.draw(st.integers(0, len(protected) - 1))]
        schedule.insert(data.draw(st.integers(0, len(schedule))), pick)
        if data.draw(st.booleans()):
            schedule.insert(data.draw(st.integers(0, len(schedule))), mangle(data.draw, pick))
    reference, native = rx_pair(profile, key)
    for packet in schedule:
        got = outcome(native.unprotect_rtcp, packet)  # type: ignore[attr-defined]
        assert got == outcome(reference.unprotect_rtcp, packet)


@settings(max_examples=300, deadline=None)
@given(profile=st.sampled_from(PROFILES), packets=st.lists(st.binary(max_size=1600), max_size=20), data=st.data())
def test_random_bytes_are_refused_alike(profile: int, packets: list[bytes], data: st.DataObject) -> None:
    """Fuzz: arbitrary datagrams, as SRTP and as SRTCP, never crash and get libsrtp's answer."""
    key = data.draw(st.binary(min_size=KEY_LENGTHS[profile], max_size=KEY_LENGTHS[profile]))
    reference, native = rx_pair(profile, key)
    for packet in packets:
        assert outcome(native.unprotect, packet) == outcome(reference.unprotect, packet)  # type: ignore[attr-defined]
        assert outcome(native.unprotect_rtcp, packet) == outcome(reference.unprotect_rtcp, packet)  # type: ignore[attr-defined]


def test_errors_are_pylibsrtp_errors_and_bad_arguments_are_refused() -> None:
    import pytest

    from edge.media import _native

    assert issubclass(_native.SrtpError, SrtpLibError)
    with pytest.raises(ValueError, match="unsupported SRTP profile"):
        _native.SrtpReceiver(3, bytes(30))
    with pytest.raises(ValueError, match="at least 30 bytes"):
        _native.SrtpReceiver(1, bytes(29))
    receiver = _native.SrtpReceiver(1, bytes(30))
    with pytest.raises(TypeError, match="packet must be bytes"):
        receiver.unprotect(bytearray(20))
    with pytest.raises(SrtpLibError, match="unsupported parameter"):
        receiver.unprotect(b"\x80" * 5)
    assert receiver.rtp_failed == 1 and receiver.streams == 0
