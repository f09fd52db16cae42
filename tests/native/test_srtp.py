"""Native SRTP protect == pylibsrtp's, byte for byte (and error for error).

pylibsrtp 1.0.0 bundles libsrtp 2.7 + OpenSSL; the native plane implements the
sender side of RFC 3711 / RFC 7714 on the system's libcrypto. Compared here for
each profile aiortc can negotiate: random keys, random RTP headers (CSRCs, both
header-extension forms, any payload length the pylibsrtp buffer takes) and
random sequence-number walks on several SSRCs: in-order runs, wraps through
65535 (the rollover counter), gaps, reordering, repeats (allow_repeat_tx), jumps
of more than half the space (the ROC guess) and indexes older than the replay
window (refused by both).
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pylibsrtp import Error as SrtpLibError
from pylibsrtp import Policy, Session

from .rig import KEY_LENGTHS, tx_policy

PROFILES = [
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
]

steps = st.one_of(
    st.just(1),
    st.integers(-3, 5),  # reorder, repeat, small gaps
    st.integers(-1100, -900),  # around the edge of the 1024 replay window
    st.integers(30000, 36000),  # more than half the space: ROC guesses
    st.integers(-65535, 65535),
)


@st.composite
def packets(draw: st.DrawFn) -> tuple[int, list[bytes]]:
    profile = draw(st.sampled_from(PROFILES))
    ssrcs = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=3, unique=True))
    seqs = {ssrc: draw(st.integers(0, 65535)) for ssrc in ssrcs}
    count = draw(st.integers(1, 40))
    out = []
    for _ in range(count):
        ssrc = draw(st.sampled_from(ssrcs))
        seqs[ssrc] = (seqs[ssrc] + draw(steps)) & 0xFFFF
        csrcs = draw(st.lists(st.integers(0, 2**32 - 1), max_size=3))
        ext = b""
        if draw(st.booleans()):
            profile_id = draw(st.sampled_from([0xBEDE, 0x1000, 0x1234]))
            words = draw(st.integers(0, 4))
            ext = struct.pack("!HH", profile_id, words) + draw(st.binary(min_size=4 * words, max_size=4 * words))
        first = 0x80 | (0x10 if ext else 0) | len(csrcs)
        header = struct.pack(
            "!BBHII", first, draw(st.integers(0, 255)), seqs[ssrc], draw(st.integers(0, 2**32 - 1)), ssrc
        )
        header += b"".join(struct.pack("!I", c) for c in csrcs) + ext
        payload = draw(st.binary(max_size=max(0, 1356 - len(header))))
        out.append(header + payload)
    return profile, out


def protect_all(protect: object, items: list[bytes]) -> list[object]:
    results: list[object] = []
    for packet in items:
        try:
            results.append(protect(packet))  # type: ignore[operator]
        except (SrtpLibError, Exception) as exc:  # both raise "replay check failed ..."
            results.append(("error", str(exc)))
    return results


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=packets(), data=st.data())
def test_protect_matches_pylibsrtp(case: tuple[int, list[bytes]], data: st.DataObject) -> None:
    from edge.media import _native

    profile, items = case
    key = data.draw(st.binary(min_size=KEY_LENGTHS[profile], max_size=KEY_LENGTHS[profile]))
    reference = protect_all(Session(tx_policy(key, profile)).protect, items)
    native = protect_all(_native.SrtpContext(profile, key).protect, items)
    assert native == reference


@settings(max_examples=50, deadline=None)
@given(start=st.integers(65000, 65535), count=st.integers(600, 1200), data=st.data())
def test_long_run_through_the_wrap_decrypts(start: int, count: int, data: st.DataObject) -> None:
    """A long in-order run through 65535 -> 0: identical, and the viewer's
    libsrtp (inbound session) authenticates and decrypts every packet."""
    from edge.media import _native

    profile = data.draw(st.sampled_from(PROFILES))
    key = data.draw(st.binary(min_size=KEY_LENGTHS[profile], max_size=KEY_LENGTHS[profile]))
    ours = _native.SrtpContext(profile, key)
    theirs = Session(tx_policy(key, profile))
    viewer = Session(tx_policy(key, profile, Policy.SSRC_ANY_INBOUND))
    for i in range(count):
        packet = struct.pack("!BBHII", 0x80, 96, (start + i) & 0xFFFF, i * 3000, 0xCAFE) + bytes([i & 0xFF]) * 100
        protected = ours.protect(packet)
        assert protected == theirs.protect(packet)
        assert viewer.unprotect(protected) == packet


def test_errors_and_limits_match_pylibsrtp() -> None:
    from edge.media import _native

    key = bytes(range(30))
    ours = _native.SrtpContext(Policy.SRTP_PROFILE_AES128_CM_SHA1_80, key)
    theirs = Session(tx_policy(key, Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    for bad in (b"\x80" * 5, b"\x8f" + bytes(20), b"\x90" + bytes(11) + b"\xbe\xde\x00\x09"):
        assert protect_all(ours.protect, [bad]) == protect_all(theirs.protect, [bad])
    too_long = struct.pack("!BBHII", 0x80, 96, 1, 1, 1) + bytes(1400)
    assert protect_all(ours.protect, [too_long]) == protect_all(theirs.protect, [too_long])
