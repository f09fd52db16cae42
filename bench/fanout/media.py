"""The benchmark stream: VP8 at ~2.5 Mbit/s (1280x720, 30 fps) plus Opus, encoded once.

Encoding live would put a 720p VP8 encoder on the load core, so the stream is encoded
once with PyAV (libvpx, libopus), cached as a small file of packets, and replayed in
real time in a loop. Replay hands the encoded packets to aiortc's own packetizers
(VP8 payload descriptor, picture id), so the node sees what an aiortc publisher sends;
for Janus the same payloads go out as plain RTP to the Streaming mountpoint.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

CACHE = Path(__file__).resolve().parent / ".build"
SECONDS = 6
FPS = 30
WIDTH, HEIGHT = 1280, 720
VIDEO_BITRATE = 2_500_000
VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)


@dataclass(slots=True)
class EncodedPacket:
    kind: str  # "audio" | "video"
    at: float  # seconds from the start of the loop
    keyframe: bool
    data: bytes


def _encode_video() -> list[EncodedPacket]:
    c = av.CodecContext.create("libvpx", "w")
    c.width, c.height, c.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    c.bit_rate = VIDEO_BITRATE
    c.time_base = fractions.Fraction(1, FPS)
    c.framerate = FPS
    c.gop_size = 2 * FPS
    c.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                 "minrate": str(VIDEO_BITRATE), "maxrate": str(VIDEO_BITRATE), "bufsize": str(VIDEO_BITRATE)}
    rng = np.random.default_rng(1)
    out: list[EncodedPacket] = []
    for i in range(SECONDS * FPS):
        img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        img[:, :, 0] = (np.arange(WIDTH) + i * 8) % 256
        img[::2, :, 1] = rng.integers(0, 255, (HEIGHT // 2, WIDTH), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for p in c.encode(frame):
            out.append(EncodedPacket("video", float(p.pts) / FPS, bool(p.is_keyframe), bytes(p)))
    return out


def _encode_audio() -> list[EncodedPacket]:
    c = av.CodecContext.create("libopus", "w")
    c.sample_rate, c.layout, c.format = 48000, "stereo", "s16"
    c.bit_rate = 64000
    out: list[EncodedPacket] = []
    n = 960
    for i in range(SECONDS * 50):
        t = (np.arange(n) + i * n) / 48000.0
        s = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(s, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * n, AUDIO_TB
        for p in c.encode(frame):
            out.append(EncodedPacket("audio", i * 0.02, True, bytes(p)))
    return out


def load_stream() -> list[EncodedPacket]:
    """The looped stream, time-ordered, from the cache (encoded on first use)."""
    path = CACHE / f"stream-{WIDTH}x{HEIGHT}-{FPS}-{VIDEO_BITRATE}-{SECONDS}s.bin"
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        packets = sorted(_encode_video() + _encode_audio(), key=lambda p: p.at)
        with open(path.with_suffix(".tmp"), "wb") as f:
            for p in packets:
                f.write(struct.pack("<BdBI", p.kind == "video", p.at, p.keyframe, len(p.data)) + p.data)
        path.with_suffix(".tmp").rename(path)
    raw = path.read_bytes()
    out, pos, head = [], 0, struct.Struct("<BdBI")
    while pos < len(raw):
        video, at, key, n = head.unpack_from(raw, pos)
        pos += head.size
        out.append(EncodedPacket("video" if video else "audio", at, bool(key), raw[pos : pos + n]))
        pos += n
    return out


def describe(stream: list[EncodedPacket]) -> dict[str, float]:
    video = [p for p in stream if p.kind == "video"]
    vbytes = sum(len(p.data) for p in video)
    vpkts = sum(len(Vp8Encoder._packetize(p.data, 0)) for p in video)
    apkts = len(stream) - len(video)
    return {"video_mbit_s": vbytes * 8 / SECONDS / 1e6, "video_pps": vpkts / SECONDS,
            "audio_pps": apkts / SECONDS, "rtp_pps": (vpkts + apkts) / SECONDS}


class LoopClock:
    """Real-time schedule of the looped stream: when packet i of loop k is due."""

    def __init__(self) -> None:
        self.start = time.monotonic() + 0.1

    async def wait(self, loop: int, at: float) -> None:
        due = self.start + loop * SECONDS + at
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class Pacer:
    """Video pacing like a browser's (libwebrtc paces at 2.5x the target bitrate).

    Without it a keyframe (~100 packets) leaves in one burst: Janus's ingest socket
    overflows and the latency percentiles measure the publisher's burst, not the node.
    """

    def __init__(self, bitrate: float = 2.5 * VIDEO_BITRATE, burst_s: float = 0.05) -> None:
        self.rate = bitrate
        self.burst = burst_s
        self.next = 0.0

    async def wait(self, nbytes: int) -> None:
        now = time.monotonic()
        # A late wake-up (the load loop was busy with viewers) is made up for with a
        # short burst, up to burst_s of credit, so the average rate holds.
        self.next = max(self.next, now - self.burst)
        delay = self.next - now
        self.next += nbytes * 8 / self.rate
        if delay > 0.001:
            await asyncio.sleep(delay)


class EncodedTrack(MediaStreamTrack):
    """A track that yields pre-encoded av.Packets; aiortc's sender packetizes them as-is."""

    def __init__(self, kind: str, stream: list[EncodedPacket], clock: LoopClock) -> None:
        super().__init__()
        self.kind = kind
        self._packets = [p for p in stream if p.kind == kind]
        self._clock = clock
        self._i = 0

    async def recv(self) -> av.Packet:
        loop, idx = divmod(self._i, len(self._packets))
        self._i += 1
        p = self._packets[idx]
        await self._clock.wait(loop, p.at)
        packet = av.Packet(p.data)
        at = loop * SECONDS + p.at
        if self.kind == "video":
            packet.pts, packet.time_base = int(at * 90000), VIDEO_TB
        else:
            packet.pts, packet.time_base = int(round(at * 48000)), AUDIO_TB
        return packet


class PlainRtpSource:
    """The same stream as plain RTP to a Janus Streaming mountpoint (video pt 100, Opus pt 111)."""

    def __init__(self, stream: list[EncodedPacket], video_port: int, audio_port: int,
                 on_sent: "callable[[bytes, float], None]") -> None:
        self.stream = stream
        self.targets = {"video": ("127.0.0.1", video_port), "audio": ("127.0.0.1", audio_port)}
        self.on_sent = on_sent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    async def run(self) -> None:
        clock = LoopClock()
        pacer = Pacer()
        vp8 = Vp8Encoder()
        seq = {"video": 0, "audio": 0}
        ssrc = {"video": 0x11111111, "audio": 0x22222222}
        pt = {"video": 100, "audio": 111}
        loop = 0
        while True:
            for p in self.stream:
                await clock.wait(loop, p.at)
                at = loop * SECONDS + p.at
                if p.kind == "video":
                    payloads = vp8._packetize(p.data, vp8.picture_id)
                    vp8.picture_id = (vp8.picture_id + 1) % (1 << 15)
                    ts = int(at * 90000) & 0xFFFFFFFF
                else:
                    payloads, ts = [p.data], int(round(at * 48000)) & 0xFFFFFFFF
                for i, payload in enumerate(payloads):
                    pkt = RtpPacket(payload_type=pt[p.kind], sequence_number=seq[p.kind], timestamp=ts,
                                    ssrc=ssrc[p.kind], payload=payload)
                    pkt.marker = int(i == len(payloads) - 1 and p.kind == "video")
                    seq[p.kind] = (seq[p.kind] + 1) & 0xFFFF
                    data = pkt.serialize()
                    if p.kind == "video":
                        await pacer.wait(len(data))
                        self.on_sent(payload, time.time())
                    self.sock.sendto(data, self.targets[p.kind])
            loop += 1
