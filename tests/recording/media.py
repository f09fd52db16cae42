"""Real encoder output for the recording unit tests, made in the test process.

Frames come from aiortc's own encoders (``aiortc.codecs.get_encoder``), the ones
a publisher uses; each encoder's packetizer is wrapped so the test keeps the
exact frame it packetized (VP8: the frame's bytes; H.264: its NAL units).
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import av
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket as AiortcRtp

from edge.recording.depacketize import RtpPacket
from edge.recording.rawfile import RawTrackWriter

VIDEO_CLOCK = 90000
FPS = 30


@dataclass
class EncodedFrame:
    data: bytes  # VP8: the frame; H.264: the access unit in Annex B with 4-byte start codes
    nals: list[bytes]  # H.264 only
    payloads: list[bytes]  # what the encoder packetized it into
    timestamp: int  # 90 kHz
    keyframe: bool


def picture(i: int, size: tuple[int, int]) -> av.VideoFrame:
    w, h = size
    img = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
    x = (i * 8) % w
    img[:, x : x + 16] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts, frame.time_base = i * (VIDEO_CLOCK // FPS), fractions.Fraction(1, VIDEO_CLOCK)
    return frame


def encode_video(codec: str, count: int, keyframes: Iterable[int] = (0,), size: tuple[int, int] = (320, 240)) -> list[EncodedFrame]:
    mime = {"vp8": "video/VP8", "h264": "video/H264"}[codec]
    encoder: Any = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=VIDEO_CLOCK, payloadType=96))
    captured: list[Any] = []
    if isinstance(encoder, Vp8Encoder):
        def vp8_packetize(buffer: bytes, picture_id: int) -> list[bytes]:
            captured.append(bytes(buffer))
            return Vp8Encoder._packetize(buffer, picture_id)

        encoder._packetize = vp8_packetize
    else:
        assert isinstance(encoder, H264Encoder)

        def h264_packetize(packages: Iterable[bytes]) -> list[bytes]:
            nals = [bytes(p) for p in packages]
            captured.append(nals)
            return H264Encoder._packetize(nals)

        encoder._packetize = h264_packetize
    wanted = set(keyframes)
    out = []
    for i in range(count):
        captured.clear()
        payloads, timestamp = encoder.encode(picture(i, size), force_keyframe=i in wanted)
        if not payloads:
            continue
        [frame] = captured
        if codec == "vp8":
            out.append(EncodedFrame(frame, [], payloads, timestamp, frame[0] & 1 == 0))
        else:
            data = b"".join(b"\x00\x00\x00\x01" + n for n in frame)
            out.append(EncodedFrame(data, frame, payloads, timestamp, any(n[0] & 0x1F == 5 for n in frame)))
    return out


def encode_opus(count: int) -> list[tuple[bytes, int]]:
    """(payload, 48 kHz timestamp) of ``count`` 20 ms Opus packets of a tone."""
    encoder: Any = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111))
    out = []
    for i in range(count):
        t = (np.arange(960) + i * 960) / 48000.0
        samples = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts, frame.time_base = i * 960, fractions.Fraction(1, 48000)
        payloads, timestamp = encoder.encode(frame)
        out.extend((p, timestamp) for p in payloads)
    return out


def remux_packets(frames: list[EncodedFrame], seq0: int = 0, ts0: int = 0) -> list[RtpPacket]:
    """The frames as depacketizer input (extended sequence numbers and timestamps)."""
    out = []
    seq = seq0
    for f in frames:
        for k, payload in enumerate(f.payloads):
            out.append(RtpPacket(seq, ts0 + f.timestamp, k == len(f.payloads) - 1, payload))
            seq += 1
    return out


def rtp_bytes(payload_type: int, ssrc: int, seq: int, timestamp: int, marker: bool, payload: bytes) -> bytes:
    packet = AiortcRtp(
        payload_type=payload_type, marker=int(marker), sequence_number=seq & 0xFFFF,
        timestamp=timestamp & 0xFFFFFFFF, ssrc=ssrc, payload=payload,
    )
    return bytes(packet.serialize())


def track_writer(directory: Path, name: str, kind: str, codec: str, payload_type: int, **meta: Any) -> RawTrackWriter:
    clock = 48000 if codec == "opus" else VIDEO_CLOCK
    return RawTrackWriter(
        directory / f"{name}.rtp",
        {
            "producer": name, "kind": kind, "source": "camera" if kind == "video" else "microphone",
            "participant": "seller", "role": "host", "order": 0,
            "codecs": {str(payload_type): {"name": codec, "clock_rate": clock, "channels": 2 if codec == "opus" else None}},
            **meta,
        },
    )
