"""RED (RFC 2198) audio redundancy towards viewers that negotiate it.

Browsers do not NACK audio: a lost Opus packet is concealed. A viewer on a
lossy link therefore hears gaps unless each packet also carries the previous
ones. Chromium offers ``red/48000/2`` (``a=fmtp:63 111/111``) on every audio
m-line and decodes it; the node answers it (transport/webrtc.py) and sends
each Opus packet wrapped in RED with up to ``distance`` earlier payloads.
With 30 % random loss, distance 3 leaves 0.3⁴ ≈ 0.8 % of frames missing
instead of 30 %.

Redundancy costs bandwidth (distance 2 triples the audio bit rate), so the
distance is chosen per viewer from its loss (``RedPolicy``): 0 on a clean link
(a RED packet with the primary block only; where every viewer starts), 1 from
its first NACK or 1 % loss, 2 from 8 %, 3 from 20 % (at most
``media.audio_red_distance``),
and never more copies than 75 % of the viewer's bandwidth estimate carries
(audio comes first: video gets what is left)
(``affordable``): loss from congestion is not cured by sending more. A viewer moves between the
producer's RedSources of different distances; all of them send the same
payload type, sequence numbers and timestamps, so a move is seamless.

One ``RedSource`` per audio producer and viewer-side Opus payload type (the
blocks name it, and browsers differ: Chromium 111, Firefox 109) builds the RED
packet once per ingress packet (same sequence number, timestamp, SSRC and
header extensions, payload type ``RedSource.payload_type``), and the data
plane fans it out to that source's consumers like any other packet: ``RedSource`` is a forwarding
group (``consumers``, ``video``, ``audio_level_id``) as a simulcast Layer is,
so both planes send RED without knowing about it. Consumers of the producer
that did not negotiate RED get the plain packet, as before.

Wire format (RFC 2198 §3): one 4-byte header per redundant block
(F=1, block PT, 14-bit timestamp offset, 10-bit length), a 1-byte header for
the primary block (F=0, PT), then the blocks' payloads, oldest first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .rtp import with_payload

if TYPE_CHECKING:
    from .consumer import Consumer

MAX_TIMESTAMP_OFFSET = (1 << 14) - 1
MAX_BLOCK_LENGTH = (1 << 10) - 1
# The largest distance the node sends: each step adds a whole Opus payload.
MAX_DISTANCE = 3


@dataclass(frozen=True, slots=True)
class RedBlock:
    """One block of a RED payload, as a parser sees it."""

    payload_type: int
    timestamp: int  # the block's own RTP timestamp (primary minus offset)
    payload: bytes


def encode_red(
    primary_pt: int, timestamp: int, primary: bytes, redundant: list[tuple[int, bytes]]
) -> bytes:
    """A RED payload: ``redundant`` is [(timestamp, payload), ...], oldest first,
    each earlier than ``timestamp`` by at most MAX_TIMESTAMP_OFFSET and at most
    MAX_BLOCK_LENGTH bytes (callers filter; this raises ValueError otherwise)."""
    headers = bytearray()
    for ts, payload in redundant:
        offset = (timestamp - ts) & 0xFFFFFFFF
        if offset > MAX_TIMESTAMP_OFFSET or len(payload) > MAX_BLOCK_LENGTH:
            raise ValueError("redundant block out of RED's range")
        headers.append(0x80 | primary_pt)
        headers += ((offset << 10) | len(payload)).to_bytes(3, "big")
    headers.append(primary_pt & 0x7F)
    return bytes(headers) + b"".join(p for _, p in redundant) + primary


def decode_red(payload: bytes, timestamp: int) -> list[RedBlock]:
    """The blocks of a RED payload, oldest first, primary last. ValueError if malformed."""
    headers: list[tuple[int, int, int]] = []
    i = 0
    while True:
        if i >= len(payload):
            raise ValueError("RED payload ends inside its headers")
        first = payload[i]
        if not first & 0x80:
            headers.append((first & 0x7F, 0, -1))
            i += 1
            break
        if i + 4 > len(payload):
            raise ValueError("RED payload ends inside a block header")
        word = int.from_bytes(payload[i + 1 : i + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & 0x3FF))
        i += 4
    blocks: list[RedBlock] = []
    for pt, offset, length in headers:
        if length < 0:
            length = len(payload) - i
        if i + length > len(payload):
            raise ValueError("RED block longer than the payload")
        blocks.append(RedBlock(pt, (timestamp - offset) & 0xFFFFFFFF, payload[i : i + length]))
        i += length
    return blocks


class RedEncoder:
    """Keeps the last ``distance`` payloads of one audio stream and wraps each new
    packet with them. A gap in timestamps beyond RED's range (a pause, a new
    source) simply leaves the old payloads out."""

    def __init__(self, distance: int) -> None:
        if not 0 <= distance <= MAX_DISTANCE:
            raise ValueError(f"RED distance must be 0..{MAX_DISTANCE}")
        self.distance = distance
        self._history: deque[tuple[int, int, bytes]] = deque(maxlen=max(1, distance))  # (seq, ts, payload)

    def encode(self, primary_pt: int, seq: int, timestamp: int, primary: bytes) -> bytes:
        redundant: list[tuple[int, bytes]] = []
        for old_seq, ts, payload in self._history:
            behind = (seq - old_seq) & 0xFFFF
            offset = (timestamp - ts) & 0xFFFFFFFF
            # Only genuinely earlier packets (a retransmitted or reordered
            # packet must not carry "redundancy" from its future).
            if 0 < behind <= self.distance and 0 < offset <= MAX_TIMESTAMP_OFFSET and len(payload) <= MAX_BLOCK_LENGTH:
                redundant.append((ts, payload))
        newest = self._history[-1][0] if self._history else None
        if self.distance and (newest is None or 0 < ((seq - newest) & 0xFFFF) < 0x8000):
            self._history.append((seq, timestamp, primary))
        return encode_red(primary_pt, timestamp, primary, redundant)


class RedSource:
    """The RED copy of one audio producer's stream: a forwarding group for the data plane."""

    video = False

    def __init__(
        self, producer: object, payload_type: int, opus_pt: int, distance: int, audio_level_id: int | None
    ) -> None:
        self.producer = producer
        self.payload_type = payload_type  # the node's own PT for the RED packets it builds
        # The viewers' Opus PT, named inside each block (the browser decodes the
        # blocks by it): one RedSource per Opus PT the producer's viewers use.
        self.opus_pt = opus_pt
        self.encoder = RedEncoder(distance)
        self.audio_level_id = audio_level_id
        self.consumers: list["Consumer"] = []

    @property
    def closed(self) -> bool:
        return bool(getattr(self.producer, "closed", False))

    def wrap(self, data: bytes, payload_offset: int, padding: int, seq: int, timestamp: int) -> bytes:
        """The RED packet of ingress packet ``data``: its header (extensions
        included) with this source's PT, and the RED payload."""
        primary = data[payload_offset : len(data) - padding]
        red = self.encoder.encode(self.opus_pt, seq, timestamp, primary)
        return with_payload(data, payload_offset, self.payload_type, red)


# Loss (fraction) from which a viewer gets one redundant block, two, three.
LOSS_FOR_ONE = 0.01
LOSS_FOR_TWO = 0.08
LOSS_FOR_THREE = 0.2  # 30 % loss leaves 0.3^4 < 1 % of frames unrecoverable


class RedPolicy:
    """How many earlier frames a viewer's RED audio carries, from its loss. Rises at
    once; falls after ``release_after`` seconds of needing less."""

    __slots__ = ("max_distance", "distance", "release_after", "_less_since")

    def __init__(self, max_distance: int, start: int = 0, release_after: float = 10.0) -> None:
        self.max_distance = max_distance
        self.distance = min(start, max_distance)
        self.release_after = release_after
        self._less_since: float | None = None

    def needed(self, loss: float) -> int:
        if loss >= LOSS_FOR_THREE:
            wanted = 3
        elif loss >= LOSS_FOR_TWO:
            wanted = 2
        else:
            wanted = 1 if loss >= LOSS_FOR_ONE else 0
        return min(wanted, self.max_distance)

    def update(
        self, loss: float, now: float, ceiling: int | None = None, raise_ceiling: int | None = None
    ) -> bool:
        """True when the distance changed. ``ceiling``: the most the viewer's link
        affords now (``affordable``), None if not known; ``raise_ceiling``: the
        most it affords with a margin, which a rise must also respect (so that
        an estimate wobbling around a threshold does not flip the distance)."""
        wanted = self.needed(loss)
        if ceiling is not None and ceiling < self.distance:
            # The link cannot afford what it gets: less at once.
            self._less_since = None
            self.distance = min(wanted, ceiling)
            return True
        if ceiling is not None:
            wanted = min(wanted, ceiling)
        if wanted > self.distance and raise_ceiling is not None:
            wanted = max(self.distance, min(wanted, raise_ceiling))
        if wanted >= self.distance:
            self._less_since = None
            if wanted == self.distance:
                return False
            self.distance = wanted
            return True
        if self._less_since is None:
            self._less_since = now
        if now - self._less_since < self.release_after:
            return False
        self._less_since = None
        self.distance = wanted
        return True


# Redundant audio may take at most this share of a viewer's estimate. Loss
# from congestion is not helped by sending more: on a link that an estimate
# says is nearly full, the audio goes without redundancy.
RED_SHARE_OF_ESTIMATE = 0.75


# Hysteresis against a wobbling estimate: a rise must fit 0.8 x the estimate,
# and only what does not fit even 1.25 x the estimate is taken back at once.
RAISE_MARGIN = 0.8
KEEP_MARGIN = 1.25


def affordable(primary_bitrate: int, estimate: int | None, margin: float = 1.0) -> int | None:
    """The largest distance whose (distance + 1) copies of the audio fit the share
    of ``margin`` x the estimate; None without an estimate or a measured audio rate."""
    if estimate is None or primary_bitrate <= 0:
        return None
    return max(0, int(estimate * margin * RED_SHARE_OF_ESTIMATE // primary_bitrate) - 1)


def unused_payload_type(taken: set[int]) -> int:
    """A dynamic payload type not in ``taken`` (for the node-internal RED PT)."""
    for pt in (63, *range(96, 128), *range(35, 63)):
        if pt not in taken:
            return pt
    raise ValueError("no free payload type")
