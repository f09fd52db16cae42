"""Per-viewer playout delay: buffer long enough for NACK repairs on lossy links.

A viewer that loses a video packet NACKs it and gets it back one round trip
later (more if the NACK or the repair is lost too: browsers retry about every
max(RTT, 100 ms)). A frame that waits for its repair is shown late; a browser
whose jitter buffer is shorter than that wait counts a freeze (WebRTC stats:
an inter-frame gap over max(3 x the mean, mean + 150 ms)). On a 3G link
(150 ms RTT, 2 % loss) that is a freeze per lost packet.

The RTP playout-delay extension (http://www.webrtc.org/experiments/rtp-hdrext/
playout-delay: 12-bit min and max, 10 ms units) lets the sender raise the
receiver's minimum playout delay. ``PlayoutDelay`` decides, per viewer, from
its loss and round-trip time, the minimum that covers a repair and two retries:

    needed = 3 x max(RTT, 100 ms) + 150 ms        (while the viewer loses packets)

capped at ``media.playout_delay_max_ms``. It rises at once (on the viewer's
first NACK, not only at the next tick) and falls only after
``release_after`` (20) seconds without loss, so a link that loses now and
then does not make the picture's latency see-saw: every rise is a visible
gap (the frames after it wait the difference).

A new viewer starts at ``media.playout_delay_start_ms`` (default 450 ms, a
repair and two retries at a short RTT): its first loss comes before any report of
it, and on a lossy link that first freeze is already too many (the issue's
10 %-loss profile allows 0.3 s of freezes in 15 s). After ``release_after``
clean seconds it falls to zero: a clean viewer ends at the browser's own
minimum latency. With ``playout_delay_start_ms = 0`` a viewer starts with no
extension at all. The value is sticky at the browser (the last one received
holds), and the node sends it on every video packet once engaged.
"""

from __future__ import annotations

from dataclasses import dataclass

# Loss (fraction of packets NACKed or reported lost) above which a viewer is
# "losing packets": below it, a repair now and then does not justify latency.
LOSS_THRESHOLD = 0.01
# Browsers re-NACK a packet every max(RTT, this) (libwebrtc's default RTT when
# a receive-only peer has no measurement).
RETRY_FLOOR_S = 0.1
MARGIN_S = 0.15
# Round trips a packet may need before playout: the repair and two retries (at
# 10 % loss each way a round trip fails 19 % of the time: two failures in a row
# are 3.6 % of losses, a freeze each with room for one retry only).
REPAIRS = 3
# The max the node sends: the browsers' own default ceiling (10 s), so that the
# extension only raises the floor and never limits their jitter buffer.
MAX_DELAY_MS = 10_000
STEP_MS = 10


@dataclass(slots=True)
class PlayoutDelay:
    ceiling_ms: int  # media.playout_delay_max_ms; 0 = disabled
    start_ms: int = 0  # media.playout_delay_start_ms: asked of every new viewer
    # Seconds without loss before the delay falls. Raising it again later costs
    # a visible gap (frames wait the difference), so it falls only after a
    # spell long enough to say the link is clean, not just quiet for a moment.
    release_after: float = 20.0
    min_ms: int = 0  # what the viewer is asked for now
    engaged: bool = False  # any value sent yet (from then on every video packet carries one)
    _clean_since: float | None = None
    changes: int = 0

    def __post_init__(self) -> None:
        # The first loss comes before any report of it: a viewer starts with a
        # repair's worth of buffer, released after ``release_after`` clean seconds.
        start = min(self.start_ms, self.ceiling_ms) // STEP_MS * STEP_MS
        if start > 0:
            self.min_ms = start
            self.engaged = True

    def needed_ms(self, loss: float, rtt: float | None) -> int:
        if loss < LOSS_THRESHOLD:
            return 0
        retry = max(rtt or 0.0, RETRY_FLOOR_S)
        ms = int((REPAIRS * retry + MARGIN_S) * 1000)
        ms = -(-ms // STEP_MS) * STEP_MS  # up to the extension's 10 ms unit
        return min(ms, self.ceiling_ms)

    def update(self, loss: float, rtt: float | None, now: float) -> bool:
        """Judge the viewer's link now; True when the minimum to ask for changed."""
        if self.ceiling_ms <= 0:
            return False
        needed = self.needed_ms(loss, rtt)
        if needed > self.min_ms:
            self._clean_since = None
            return self._set(needed)
        if needed == self.min_ms:
            self._clean_since = None
            return False
        # Lower than now: only after a while without needing it.
        if self._clean_since is None:
            self._clean_since = now
            return False
        if now - self._clean_since >= self.release_after:
            self._clean_since = None
            return self._set(needed)
        return False

    def _set(self, ms: int) -> bool:
        self.min_ms = ms
        self.engaged = True
        self.changes += 1
        return True

    def extension_value(self) -> bytes | None:
        """The extension's 3 bytes (min, max in 10 ms units), or None while never engaged."""
        if not self.engaged:
            return None
        return encode_playout_delay(self.min_ms, MAX_DELAY_MS)


def encode_playout_delay(min_ms: int, max_ms: int) -> bytes:
    lo, hi = min_ms // STEP_MS, max_ms // STEP_MS
    if not (0 <= lo <= 0xFFF and 0 <= hi <= 0xFFF and lo <= hi):
        raise ValueError("playout delay out of the extension's range")
    return ((lo << 12) | hi).to_bytes(3, "big")


def decode_playout_delay(value: bytes) -> tuple[int, int]:
    """(min_ms, max_ms) of an extension value."""
    if len(value) != 3:
        raise ValueError("a playout-delay value is 3 bytes")
    word = int.from_bytes(value, "big")
    return (word >> 12) * STEP_MS, (word & 0xFFF) * STEP_MS
