"""Remux a raw recording into WebM (VP8 + Opus) or Matroska (H.264 + Opus), no transcoding.

The node runs this as a child process when a recording ends
(``python -m edge.recording.remux <recording dir>``, which prints a JSON
summary), so the CPU it takes never competes with the media path for the
node's GIL. Tests call :func:`remux` directly.

Steps, per producer (its raw file, see ``rawfile.py``):

1. RTP sequence numbers and timestamps are unwrapped in arrival order; the
   packets go through a reorder window (late retransmissions find their place,
   duplicates are dropped) and the depacketizer (``depacketize.py``) gives frames.
2. Timing: a frame's time is its RTP timestamp relative to the track's first
   packet, at the codec's clock rate, anchored on the node's wall clock. The
   anchor is the minimum transit (arrival − media time) over the track, which
   removes network jitter from it. When the publisher sent RTCP sender
   reports, tracks are first placed on the publisher's NTP clock (median of
   NTP − media time over its SRs) and one offset per publisher — its minimum
   transit — brings them to the node's clock, so audio and video keep exactly
   the sync the publisher meant. Without SRs, or with SRs that contradict each
   other (an RTP clock not running at its rate) or the arrival times (by more
   than a second), the track's own minimum transit is used.
3. The host's camera (else the first video) and microphone (else the first
   Opus track) are muxed with PyAV as ``av.Packet`` objects on streams that
   have no open codec: video on ``add_mux_stream`` (no codec context at all;
   for H.264 the SPS/PPS go into the header via PyAV's extract_extradata
   bitstream filter), Opus on a stream copied from an unopened template whose
   only setting is the OpusHead the WebM muxer needs. No encoder or decoder
   is ever opened. Time 0 of the file is the earliest first frame; video
   starts at a keyframe.
"""

from __future__ import annotations

import heapq
import io
import json
import os
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from ..media.rtp import RtpHeader
from . import rawfile
from .depacketize import (
    Frame,
    RtpPacket,
    depacketizer,
    h264_frame_dimensions,
    opus_samples,
    vp8_dimensions,
)

REORDER_WINDOW = 512  # packets held back to put retransmissions in order
MAX_ANCHOR_DISAGREEMENT = 1.0  # seconds between SR-based and arrival-based anchors
SR_TOLERANCE = 0.05  # seconds of disagreement between a track's SRs ...
SR_DRIFT = 200e-6  # ... plus this much per second between its first and last SR
MS = Fraction(1, 1000)
NTP_EPOCH_OFFSET = 2208988800  # 1900-01-01 to 1970-01-01 in seconds

VIDEO_CODECS = ("vp8", "h264")
AUDIO_CODECS = ("opus",)


def opus_head(channels: int = 2, pre_skip: int = 0, sample_rate: int = 48000) -> bytes:
    """The OpusHead identification header (RFC 7845 section 5.1), WebM CodecPrivate."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0)


def _signed(delta: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((delta + half) % (1 << bits)) - half


@dataclass
class Track:
    path: Path
    meta: dict[str, Any]
    codec: str = ""
    clock_rate: int = 90000
    payload_type: int | None = None
    channels: int = 2
    packets: int = 0
    base_ts: int | None = None
    min_transit: float = float("inf")
    sr_offsets: list[float] = field(default_factory=list)
    sr_span: float = 0.0  # seconds between the first and the last SR
    anchor: float = 0.0  # node wall-clock time of media time 0
    anchor_source: str = "arrival"

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))

    def describe(self) -> dict[str, Any]:
        return {
            "producer": self.meta.get("producer"),
            "participant": self.meta.get("participant"),
            "source": self.meta.get("source"),
            "kind": self.kind,
            "codec": self.codec,
            "packets": self.packets,
            "timing": self.anchor_source,
        }


def _codec_of(meta: dict[str, Any], payload_type: int) -> dict[str, Any] | None:
    codec = (meta.get("codecs") or {}).get(str(payload_type))
    return codec if isinstance(codec, dict) else None


def _stream(track: Track) -> Iterator[RtpPacket | tuple[float, int, int]]:
    """Packets of the track's codec (and SRs as (arrival, NTP, extended RTP ts)), in
    arrival order, with sequence numbers and timestamps unwrapped."""
    meta, records = rawfile.read_records(track.path)
    last_seq = last_ts = None
    ext_seq = ext_ts = 0
    for kind, arrival, body in records:
        if kind == rawfile.SR:
            if last_ts is None:
                continue  # no packet yet to unwrap against
            ntp, rtp_ts = rawfile.parse_sender_report(body)
            yield (arrival, ntp, ext_ts + _signed(rtp_ts - last_ts, 32))
            continue
        if kind != rawfile.RTP:
            continue
        try:
            header = RtpHeader.parse(body)
        except ValueError:
            continue
        if track.payload_type is None:
            codec = _codec_of(meta, header.payload_type)
            if codec is None:
                continue
            track.payload_type = header.payload_type
            track.codec = str(codec.get("name", "")).lower()
            track.clock_rate = int(codec.get("clock_rate") or 90000)
            track.channels = int(codec.get("channels") or 2)
        if header.payload_type != track.payload_type:
            continue
        if last_seq is None:
            ext_seq, ext_ts = header.sequence_number, header.timestamp
        else:
            ext_seq += _signed(header.sequence_number - last_seq, 16)
            ext_ts += _signed(header.timestamp - last_ts, 32)  # type: ignore[operator]
        last_seq, last_ts = header.sequence_number, header.timestamp
        end = len(body) - header.padding_length
        yield RtpPacket(ext_seq, ext_ts, header.marker, body[header.payload_offset : end], arrival)


def _scan(track: Track) -> None:
    """First pass: packet count, the first timestamp, minimum transit, SR offsets."""
    ntp_points: list[tuple[float, int]] = []
    for item in _stream(track):
        if isinstance(item, tuple):
            arrival, ntp, ext = item
            ntp_points.append(((ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32, ext))
            continue
        if track.base_ts is None:
            track.base_ts = item.ext_ts
        track.packets += 1
        media = (item.ext_ts - track.base_ts) / track.clock_rate
        transit = item.arrival - media
        if transit < track.min_transit:
            track.min_transit = transit
    if track.base_ts is not None:
        base = track.base_ts
        track.sr_offsets = [t - (ext - base) / track.clock_rate for t, ext in ntp_points]
        if ntp_points:
            track.sr_span = ntp_points[-1][0] - ntp_points[0][0]
    track.anchor = track.min_transit


def _anchor(tracks: list[Track]) -> None:
    """Place every track on the node's clock (see the module docstring)."""
    by_publisher: dict[str, list[Track]] = {}
    for track in tracks:
        if track.base_ts is not None and _consistent(track):
            by_publisher.setdefault(str(track.meta.get("participant")), []).append(track)
    for group in by_publisher.values():
        offsets = {id(t): statistics.median(t.sr_offsets) for t in group}
        shift = min(t.min_transit - offsets[id(t)] for t in group)
        for track in group:
            anchor = offsets[id(track)] + shift
            if abs(track.min_transit - anchor) <= MAX_ANCHOR_DISAGREEMENT:
                track.anchor = anchor
                track.anchor_source = "sender_report"


def _consistent(track: Track) -> bool:
    """Whether the track's SRs agree with each other: NTP − media time may drift with
    the sender's clocks (allowed: 200 ppm) but not jump (a sender whose RTP clock
    does not run at the negotiated rate)."""
    if not track.sr_offsets:
        return False
    spread = max(track.sr_offsets) - min(track.sr_offsets)
    return spread <= SR_TOLERANCE + SR_DRIFT * track.sr_span


def _reorder(packets: Iterator[RtpPacket | tuple[float, int, int]], window: int) -> Iterator[RtpPacket]:
    """Packets in sequence-number order; duplicates and hopelessly late ones dropped."""
    heap: list[tuple[int, int, RtpPacket]] = []
    seen: set[int] = set()
    emitted = None
    n = 0
    for packet in packets:
        if isinstance(packet, tuple):
            continue
        if packet.ext_seq in seen or (emitted is not None and packet.ext_seq <= emitted):
            continue
        seen.add(packet.ext_seq)
        n += 1
        heapq.heappush(heap, (packet.ext_seq, n, packet))
        if len(heap) > window:
            _, _, out = heapq.heappop(heap)
            emitted = out.ext_seq
            seen.discard(out.ext_seq)
            yield out
    while heap:
        yield heapq.heappop(heap)[2]


def _frames(track: Track) -> Iterator[Frame]:
    d = depacketizer(track.codec)
    for packet in _reorder(_stream(track), REORDER_WINDOW):
        yield from d.push(packet)
    yield from d.flush()
    track.meta["_dropped"] = d.frames_dropped


def load_tracks(directory: Path) -> list[Track]:
    tracks = []
    for path in sorted(directory.glob("*.rtp")):
        try:
            meta = rawfile.read_meta(path)
        except (OSError, ValueError):
            continue
        track = Track(path, meta)
        _scan(track)
        if track.packets:
            tracks.append(track)
    _anchor(tracks)
    return tracks


def _rank(track: Track, preferred_source: str) -> tuple[int, int, int]:
    role = {"host": 0, "cohost": 1}.get(str(track.meta.get("role")), 2)
    return (role, 0 if track.meta.get("source") == preferred_source else 1, int(track.meta.get("order", 0)))


def choose(tracks: list[Track]) -> tuple[Track | None, Track | None]:
    """The program: the host's camera and microphone (best candidates otherwise)."""
    videos = sorted((t for t in tracks if t.codec in VIDEO_CODECS), key=lambda t: _rank(t, "camera"))
    audios = sorted((t for t in tracks if t.codec in AUDIO_CODECS), key=lambda t: _rank(t, "microphone"))
    video = videos[0] if videos else None
    audio = audios[0] if audios else None
    if video is not None:
        same = [a for a in audios if a.meta.get("participant") == video.meta.get("participant")]
        if same:
            audio = same[0]
    return video, audio


@dataclass
class _Output:
    track: Track
    frames: Iterator[Frame]
    first: Frame
    stream: Any = None
    count: int = 0
    last_pts: int = -1

    def time(self, frame: Frame) -> float:
        assert self.track.base_ts is not None
        return self.track.anchor + (frame.ext_ts - self.track.base_ts) / self.track.clock_rate


def _open(track: Track | None) -> _Output | None:
    if track is None:
        return None
    frames = _frames(track)
    first = next(frames, None)
    if first is None:
        return None
    return _Output(track, frames, first)


def remux(directory: Path, name: str = "replay") -> dict[str, Any]:
    """Write ``<name>.webm`` (or ``.mkv``) in ``directory``; returns a summary."""
    import av  # only the remuxer (a child process of the node) loads libav

    directory = Path(directory)
    started = time.monotonic()
    tracks = load_tracks(directory)
    video_track, audio_track = choose(tracks)
    video, audio = _open(video_track), _open(audio_track)
    if video is None and audio is None:
        raise ValueError(f"{directory}: no recorded frames to remux")
    matroska = video is not None and video.track.codec == "h264"
    ext, fmt, media_type = (".mkv", "matroska", "video/x-matroska") if matroska else (".webm", "webm", "video/webm")
    outputs = [o for o in (video, audio) if o is not None]
    origin = min(o.time(o.first) for o in outputs)

    final = directory / (name + ext)
    partial = directory / (name + ext + ".part")
    container = av.open(str(partial), "w", format=fmt)
    template_box = None
    try:
        if video is not None:
            if video.track.codec == "vp8":
                size = vp8_dimensions(video.first.data)
            else:
                size = h264_frame_dimensions(video.first.data)
            width, height = size or (0, 0)
            video.stream = container.add_mux_stream(video.track.codec, width=width, height=height)
            video.track.meta["_size"] = [width, height]
        if audio is not None:
            # The WebM muxer takes Opus' CodecPrivate (OpusHead) from the stream's
            # parameters; a stream copied from a template gets a codec context that
            # PyAV marks as initialised, so it is never opened, only read.
            template_box = av.open(io.BytesIO(), "w", format=fmt)
            template = template_box.add_stream("opus", rate=48000)
            audio.stream = container.add_stream_from_template(template)
            audio.stream.codec_context.extradata = opus_head(audio.track.channels)

        def timeline(out: _Output) -> Iterator[tuple[int, int, _Output, Frame]]:
            order = 0 if out is video else 1
            frame: Frame | None = out.first
            while frame is not None:
                pts = round((out.time(frame) - origin) * 1000)
                if pts <= out.last_pts:
                    pts = out.last_pts + 1
                out.last_pts = pts
                yield pts, order, out, frame
                frame = next(out.frames, None)

        duration_ms = 0
        for pts, _, out, frame in heapq.merge(*(timeline(o) for o in outputs)):
            packet = av.Packet(frame.data)
            packet.stream = out.stream
            packet.time_base = MS
            packet.pts = packet.dts = pts
            end = pts
            if out is audio:
                samples = opus_samples(frame.data)
                packet.duration = max(1, round(samples / 48)) if samples else 20
                end = pts + packet.duration
            packet.is_keyframe = frame.keyframe
            container.mux(packet)
            out.count += 1
            duration_ms = max(duration_ms, end)
        opened = [s for s in container.streams if s.codec_context is not None and s.codec_context.is_open]
        if opened:  # never: the remuxer only muxes
            raise RuntimeError(f"a codec was opened while remuxing: {opened}")
    finally:
        container.close()
        if template_box is not None:
            template_box.close()
    os.replace(partial, final)

    def describe(out: _Output | None) -> dict[str, Any] | None:
        if out is None:
            return None
        info = out.track.describe()
        info["frames"] = out.count
        info["frames_dropped"] = out.track.meta.get("_dropped", 0)
        if "_size" in out.track.meta:
            info["width"], info["height"] = out.track.meta["_size"]
        return info

    chosen = {id(o.track) for o in outputs}
    return {
        "media": final.name,
        "media_type": media_type,
        "format": fmt,
        "bytes": final.stat().st_size,
        "duration": duration_ms / 1000.0,
        "media_start": origin,
        "video": describe(video),
        "audio": describe(audio),
        "other_tracks": [t.describe() for t in tracks if id(t) not in chosen],
        "remux_seconds": round(time.monotonic() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edge.recording.remux <recording directory>", file=sys.stderr)
        return 2
    try:
        os.nice(10)  # behind the node's own work
    except OSError:
        pass
    try:
        summary = remux(Path(args[0]))
    except Exception as exc:  # reported to the node as JSON
        print(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"}))
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
