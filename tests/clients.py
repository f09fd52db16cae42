"""Real aiortc WHIP publishers and WHEP viewers for the tests.

The publisher encodes real VP8 + Opus (frames made with av) and records the
clear RTP payloads it sends; the viewer decodes what it receives and records the
clear RTP payloads that arrive, so tests can compare bytes end to end.
(These hooks are on the *test peers*, not on the node.)
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from edge.media.red import encode_red
from edge.media.rtp import RtpHeader

VIDEO_SIZE = (320, 240)


def client_config() -> RTCConfiguration:
    # Browsers bundle everything on one transport; aiortc's default "balanced"
    # policy would not, and then sends only on the first transport of a kind.
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class PatternVideoTrack(VideoStreamTrack):
    """Moving pattern with noise: every frame differs, keyframes span many packets."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0
        self._rng = np.random.default_rng(7)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        w, h = VIDEO_SIZE
        img = self._rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        x = (self.frames * 4) % w
        img[:, x : x + 20] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 440 Hz tone, so Opus packets carry real content (silence is tiny)."""

    def __init__(self) -> None:
        super().__init__()
        self._t = 0

    async def recv(self) -> av.AudioFrame:
        await super().recv()  # only for its 20 ms pacing (it makes 8 kHz silence)
        n = 960  # 20 ms at 48 kHz
        t = (np.arange(n) + self._t) / 48000.0
        samples = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        out = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        out.sample_rate = 48000
        out.pts, out.time_base = self._t, fractions.Fraction(1, 48000)
        self._t += n
        return out


def _payload(data: bytes) -> bytes:
    b0 = data[0]
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        pos += 4 + struct.unpack_from("!H", data, pos + 2)[0] * 4
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    return data[pos:end]


async def wait_connected(pc: RTCPeerConnection, timeout: float = 15.0) -> None:
    done = asyncio.Event()

    def check() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    pc.on("connectionstatechange", check)
    check()
    await asyncio.wait_for(done.wait(), timeout)
    if pc.connectionState != "connected":
        raise RuntimeError(f"peer connection {pc.connectionState}")


def selected_pair(pc: RTCPeerConnection) -> tuple[tuple[str, int], tuple[str, int]]:
    """(local, remote) address of the client's nominated ICE pair."""
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    pair = connection._nominated[1]
    return (pair.local_addr, pair.remote_addr)


def pin_local_port(pc: RTCPeerConnection, port: int) -> None:
    """Make the client's ICE gather its host candidate on this local port (not an ephemeral
    one), so a test can connect a new peer from the exact address a previous one used."""
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    gather = connection.get_component_candidates

    async def pinned(component: int, addresses: list[str], timeout: int = 5) -> Any:
        loop = asyncio.get_running_loop()
        create = loop.create_datagram_endpoint

        async def on_port(factory: Any, local_addr: Any = None, **kw: Any) -> Any:
            return await create(factory, local_addr=(local_addr[0], port), **kw)

        loop.create_datagram_endpoint = on_port  # type: ignore[method-assign]
        try:
            return await gather(component, addresses, timeout)
        finally:
            del loop.create_datagram_endpoint

    connection.get_component_candidates = pinned


@dataclass
class WhipPublisher:
    url: str
    room: str
    token: str
    video: bool = True
    audio: bool = True
    pc: RTCPeerConnection = field(init=False)
    location: str = ""
    sent_payloads: dict[str, set[bytes]] = field(default_factory=lambda: {"audio": set(), "video": set()})
    video_track: PatternVideoTrack | None = None
    sent_timestamps: dict[bytes, int] = field(default_factory=dict)  # payload -> RTP timestamp
    sender_reports: list[tuple[int, int, int]] = field(default_factory=list)  # (ssrc, ntp, rtp)
    codec_preferences: dict[str, list[Any]] = field(default_factory=dict)
    # Send audio as a browser does once the answer lists RED first: each Opus
    # packet wrapped in RED (PT 63) with the previous frame as a redundant block.
    red: bool = False
    # Lose every n-th audio packet before it leaves (uplink loss; 0 = none).
    drop_audio_every: int = 0
    dropped_audio: list[bytes] = field(default_factory=list)  # the Opus payloads lost
    _red_previous: tuple[int, bytes] | None = None
    _audio_sent: int = 0

    def _as_red(self, data: bytes) -> bytes:
        """The RED packet a browser would send for this Opus packet (distance 1)."""
        header = RtpHeader.parse(data)
        payload = data[header.payload_offset : len(data) - header.padding_length]
        previous = self._red_previous
        redundant = []
        if previous is not None and 0 < (header.timestamp - previous[0]) & 0xFFFFFFFF <= 0x3FFF:
            redundant = [previous]
        self._red_previous = (header.timestamp, payload)
        head = bytearray(data[: header.payload_offset])
        head[0] &= 0xDF
        head[1] = (head[1] & 0x80) | RED_PT
        return bytes(head) + encode_red(header.payload_type, header.timestamp, payload, redundant)

    async def start(self) -> httpx.Response:
        self.pc = RTCPeerConnection(client_config())
        if self.audio:
            self.pc.addTrack(ToneAudioTrack())
        if self.video:
            self.video_track = PatternVideoTrack()
            self.pc.addTrack(self.video_track)
        for t in self.pc.getTransceivers():
            if t.kind in self.codec_preferences:
                t.setCodecPreferences(self.codec_preferences[t.kind])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        kinds = {t.sender._ssrc: t.kind for t in self.pc.getTransceivers()}
        dtls = self.pc.getTransceivers()[0].sender.transport
        original = dtls._send_rtp

        async def record(data: bytes) -> None:
            if not (192 <= data[1] <= 223):
                ssrc = struct.unpack_from("!I", data, 8)[0]
                kind = kinds.get(ssrc)
                if kind:
                    payload = _payload(data)
                    self.sent_payloads[kind].add(payload)
                    self.sent_timestamps[payload] = struct.unpack_from("!I", data, 4)[0]
                if kind == "audio" and self.red:
                    data = self._as_red(data)
                if kind == "audio" and self.drop_audio_every:
                    self._audio_sent += 1
                    if self._audio_sent % self.drop_audio_every == 0:
                        self.dropped_audio.append(payload)
                        return
            else:
                self.sender_reports.extend(_sender_reports(data))
            await original(data)

        dtls._send_rtp = record
        offer = self.pc.localDescription.sdp
        if self.red:
            offer = with_browser_extras(offer)
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{self.url}/whip/{self.room}",
                content=offer,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
            )
        if r.status_code != 201:
            await self.pc.close()
            return r
        self.location = r.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await wait_connected(self.pc)
        return r

    async def stop(self, delete: bool = True) -> None:
        await self.pc.close()
        if delete and self.location:
            async with httpx.AsyncClient() as client:
                await client.delete(
                    self.url + self.location, headers={"Authorization": f"Bearer {self.token}"}
                )


@dataclass
class WhepViewer:
    url: str
    room: str
    token: str
    video_slots: int = 1
    audio_slots: int = 1
    local_port: int | None = None  # gather on this port (pin_local_port) instead of an ephemeral one
    pc: RTCPeerConnection = field(init=False)
    location: str = ""
    received_payloads: dict[str, list[bytes]] = field(default_factory=lambda: {"audio": [], "video": []})
    frames: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    frame_sizes: set[tuple[int, int]] = field(default_factory=set)
    size_log: list[tuple[float, int, int]] = field(default_factory=list)  # (monotonic, w, h) on change
    # When set, the viewer reports this bandwidth estimate (REMB) instead of aiortc's own.
    estimate: int | None = None
    # Offer what browsers offer and aiortc does not: RED over Opus on audio
    # (red/48000/2) and the playout-delay extension on video. aiortc itself
    # cannot decode RED: raw_packets has what arrives.
    offer_browser_extras: bool = False
    # Offer transport-wide congestion control as browsers do, and report every
    # packet's arrival (TWCC feedback every 100 ms) instead of REMB.
    twcc: bool = False
    twcc_id: int | None = None  # the answer's transport-cc extension id
    twcc_arrivals: dict[int, float] = field(default_factory=dict)  # unwrapped seq -> monotonic arrival
    twcc_order: list[int] = field(default_factory=list)  # unwrapped seqs as they arrived
    twcc_feedbacks: int = 0
    raw_packets: dict[str, list[bytes]] = field(default_factory=lambda: {"audio": [], "video": []})
    rtx_packets: dict[str, list[bytes]] = field(default_factory=lambda: {"audio": [], "video": []})  # repairs on RTX SSRCs
    posted_at: float = 0.0
    first_video_frame_at: float | None = None
    answer_sdp: str = ""
    received_timestamps: dict[bytes, int] = field(default_factory=dict)  # payload -> RTP timestamp
    sender_reports: list[tuple[int, int, int]] = field(default_factory=list)  # (ssrc, ntp, rtp)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _first_frame: asyncio.Event = field(default_factory=asyncio.Event)
    _frame: asyncio.Event = field(default_factory=asyncio.Event)
    _report: asyncio.Event = field(default_factory=asyncio.Event)
    _raw: asyncio.Event = field(default_factory=asyncio.Event)
    _send_rtcp: Any = None

    async def start(self) -> httpx.Response:
        self.pc = RTCPeerConnection(client_config())
        for _ in range(self.audio_slots):
            self.pc.addTransceiver("audio", direction="recvonly")
        for _ in range(self.video_slots):
            self.pc.addTransceiver("video", direction="recvonly")
        if self.local_port is not None:
            pin_local_port(self.pc, self.local_port)

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        if self.offer_browser_extras:
            offer = with_browser_extras(offer)
        if self.twcc:
            offer = with_transport_cc(offer)
        self.posted_at = time.monotonic()
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{self.url}/whep/{self.room}",
                content=offer,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
            )
        if r.status_code != 201:
            await self.pc.close()
            return r
        self.location = r.headers["location"]
        self.answer_sdp = r.text
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await wait_connected(self.pc)
        # Record what arrives, after SRTP, before aiortc's jitter buffer.
        kinds = {}
        for t in self.pc.getTransceivers():
            kinds[t.mid] = t.kind
        answer_ssrcs = _answer_ssrcs(r.text)
        rtx_ssrcs = _answer_rtx_ssrcs(r.text)
        self.twcc_id = _answer_extension_id(r.text, EXT_TRANSPORT_CC) if self.twcc else None
        dtls = self.pc.getTransceivers()[0].receiver.transport
        original = dtls._handle_rtp_data

        async def record(data: bytes, arrival_time_ms: int) -> None:
            ssrc = struct.unpack_from("!I", data, 8)[0]
            kind = answer_ssrcs.get(ssrc)
            if self.twcc_id is not None:
                self._twcc_arrival(data)
            if kind and ssrc in rtx_ssrcs:
                # A repair on the RTX stream (RFC 4588): its payload after the OSN.
                self.rtx_packets[kind].append(data)
                payload = _payload(data)[2:]
                self.received_payloads[kind].append(payload)
                self.received_timestamps[payload] = struct.unpack_from("!I", data, 4)[0]
            elif kind:
                self.raw_packets[kind].append(data)
                self._raw.set()
                payload = _payload(data)
                self.received_payloads[kind].append(payload)
                self.received_timestamps[payload] = struct.unpack_from("!I", data, 4)[0]
            await original(data, arrival_time_ms)

        original_rtcp = dtls._handle_rtcp_data

        async def record_rtcp(data: bytes) -> None:
            reports = _sender_reports(data)
            if reports:
                self.sender_reports.extend(reports)
                self._report.set()
            await original_rtcp(data)

        dtls._handle_rtp_data = record
        dtls._handle_rtcp_data = record_rtcp
        original_send = dtls._send_rtp

        async def send(data: bytes) -> None:
            # With a test-set estimate or TWCC, aiortc's own REMB (PSFB fmt 15) is held back.
            remb = len(data) > 1 and data[1] == 206 and data[0] & 0x1F == 15
            if remb and (self.estimate is not None or self.twcc_id is not None):
                return
            await original_send(data)

        dtls._send_rtp = send
        self._send_rtcp = original_send
        self._tasks.append(asyncio.ensure_future(self._report_estimate(dtls, original_send, answer_ssrcs)))
        if self.twcc_id is not None:
            self._tasks.append(asyncio.ensure_future(self._report_twcc(original_send)))
        return r

    def _twcc_arrival(self, data: bytes) -> None:
        from edge.media.rtp import RtpHeader

        value = RtpHeader.parse(data).extensions.get(self.twcc_id)  # type: ignore[arg-type]
        if value is None or len(value) != 2:
            return
        wire = int.from_bytes(value, "big")
        last = self.twcc_order[-1] if self.twcc_order else wire
        unwrapped = last + ((wire - last + 0x8000) % 0x10000) - 0x8000
        if unwrapped not in self.twcc_arrivals:
            self.twcc_arrivals[unwrapped] = time.monotonic()
            self.twcc_order.append(unwrapped)

    async def _report_twcc(self, send: Any) -> None:
        """Feedback as libwebrtc's receiver sends it: every 100 ms, the packets
        from the first unreported sequence to the highest received, each with
        its arrival time or as not received."""
        from edge.media.rtcp import TransportFeedback
        from edge.media.twcc import TwccFeedback

        base: int | None = None
        while True:
            await asyncio.sleep(0.1)
            if not self.twcc_order:
                continue
            if base is None:
                base = min(self.twcc_arrivals)
            highest = max(self.twcc_order[-64:])
            if highest < base:
                continue
            arrivals = [self.twcc_arrivals.get(seq) for seq in range(base, highest + 1)]
            if all(a is None for a in arrivals):
                continue
            feedback = TwccFeedback.from_arrivals(base & 0xFFFF, arrivals, self.twcc_feedbacks)
            await send(bytes(TransportFeedback(sender_ssrc=1, media_ssrc=0, feedback=feedback)))
            self.twcc_feedbacks += 1
            base = highest + 1

    async def _report_estimate(self, dtls: Any, send: Any, ssrcs: dict[int, str]) -> None:
        from edge.media.rtcp import Remb

        video = [ssrc for ssrc, kind in ssrcs.items() if kind == "video"]
        while True:
            await asyncio.sleep(0.25)
            if self.estimate is not None and video:
                await send(bytes(Remb(sender_ssrc=1, bitrate=self.estimate, ssrcs=video)))

    async def send_rtcp(self, data: bytes) -> None:
        """Send an RTCP packet of the test's own (e.g. NACKs) to the node."""
        await self._send_rtcp(data)

    async def wait_raw(self, kind: str, count: int, timeout: float = 20.0) -> list[bytes]:
        """Until ``count`` RTP packets of ``kind`` arrived (decodable or not)."""
        await _until(
            self._raw, lambda: len(self.raw_packets[kind]) >= count, timeout,
            lambda: f"{kind}: {len(self.raw_packets[kind])} of {count} packets",
        )
        return self.raw_packets[kind]

    def current_size(self) -> tuple[int, int] | None:
        return self.size_log[-1][1:] if self.size_log else None  # type: ignore[return-value]

    async def wait_size(self, size: tuple[int, int], timeout: float = 20.0) -> float:
        """Until decoded video frames have this size; returns how long it took."""
        start = time.monotonic()
        while self.current_size() != size:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"video stayed at {self.current_size()}, wanted {size}")
            self._frame.clear()
            try:
                await asyncio.wait_for(self._frame.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        return time.monotonic() - start

    async def _consume(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames[track.kind] += 1
            self._frame.set()
            if track.kind == "video":
                self.frame_sizes.add((frame.width, frame.height))
                if not self.size_log or self.size_log[-1][1:] != (frame.width, frame.height):
                    self.size_log.append((time.monotonic(), frame.width, frame.height))
                if self.first_video_frame_at is None:
                    self.first_video_frame_at = time.monotonic()
                    self._first_frame.set()

    async def wait_frames(self, kind: str, count: int, timeout: float = 20.0) -> None:
        await _until(
            self._frame, lambda: self.frames[kind] >= count, timeout,
            lambda: f"{kind}: {self.frames[kind]} of {count} frames decoded",
        )

    async def wait_sender_reports(self, streams: int, timeout: float = 15.0) -> None:
        """Until SRs for ``streams`` different SSRCs have arrived."""
        deadline = time.monotonic() + timeout
        while len({ssrc for ssrc, _, _ in self.sender_reports}) < streams:
            self._report.clear()
            await asyncio.wait_for(self._report.wait(), max(0.0, deadline - time.monotonic()))

    async def wait_first_frame(self, timeout: float = 15.0) -> float:
        await asyncio.wait_for(self._first_frame.wait(), timeout)
        assert self.first_video_frame_at is not None
        return self.first_video_frame_at - self.posted_at

    def nominated_local_port(self) -> int:
        dtls = self.pc.getTransceivers()[0].receiver.transport
        return int(dtls.transport._connection._nominated[1].local_candidate.port)

    async def stop(self, delete: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        if delete and self.location:
            async with httpx.AsyncClient() as client:
                await client.delete(
                    self.url + self.location, headers={"Authorization": f"Bearer {self.token}"}
                )


async def _until(event: asyncio.Event, done: Any, timeout: float, progress: Any) -> None:
    """Until ``done()``, woken by ``event``; TimeoutError saying ``progress()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not done():
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise TimeoutError(progress()) from None


RED_PT = 63
PLAYOUT_DELAY_ID = 12
TWCC_ID = 5
EXT_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
EXT_PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"


def with_browser_extras(sdp: str, opus_pt: int = 111) -> str:
    """An aiortc offer made to look like Chromium's: Opus renumbered to
    ``opus_pt`` (aiortc's publisher uses 96, so a node that forwarded the
    publisher's PT would show), RED over it (``a=rtpmap:63 red/48000/2``) on
    audio m-lines, and the playout-delay extension on video m-lines."""
    lines = sdp.split("\r\n")
    ours = next(x[9:].split(" ", 1)[0] for x in lines if x.startswith("a=rtpmap:") and "opus/48000" in x)
    out: list[str] = []
    kind = ""
    for line in lines:
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
            if kind == "audio":
                fields = line.split(" ")
                line = " ".join([*fields[:3], *(str(opus_pt) if f == ours else f for f in fields[3:]), str(RED_PT)])
        if kind == "audio":
            for prefix in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"):
                if line.startswith(f"{prefix}{ours} "):
                    line = f"{prefix}{opus_pt} " + line.split(" ", 1)[1]
            if line.startswith(f"a=rtpmap:{opus_pt} "):
                out += [line, f"a=rtpmap:{RED_PT} red/48000/2", f"a=fmtp:{RED_PT} {opus_pt}/{opus_pt}"]
                continue
        if kind == "video" and line.startswith("a=mid:"):
            out += [line, f"a=extmap:{PLAYOUT_DELAY_ID} {EXT_PLAYOUT_DELAY}"]
            continue
        out.append(line)
    return "\r\n".join(out)


def _sender_reports(data: bytes) -> list[tuple[int, int, int]]:
    from edge.media.rtcp import SenderReport, parse_rtcp

    try:
        return [(p.ssrc, p.ntp_timestamp, p.rtp_timestamp) for p in parse_rtcp(data) if isinstance(p, SenderReport)]
    except ValueError:
        return []


def with_transport_cc(sdp: str) -> str:
    """An offer with transport-wide congestion control on every m-line, as
    Chromium offers it: the header extension and ``a=rtcp-fb:<pt> transport-cc``."""
    out: list[str] = []
    for line in sdp.split("\r\n"):
        out.append(line)
        if line.startswith("a=mid:"):
            out.append(f"a=extmap:{TWCC_ID} {EXT_TRANSPORT_CC}")
        elif line.startswith("a=rtpmap:") and "/rtx/" not in line.lower() and " rtx/" not in line.lower():
            out.append(f"a=rtcp-fb:{line[9:].split(' ', 1)[0]} transport-cc")
    return "\r\n".join(out)


def _answer_extension_id(sdp: str, uri: str) -> int | None:
    for line in sdp.splitlines():
        if line.startswith("a=extmap:") and line.split(" ", 1)[1].strip() == uri:
            return int(line[9:].split(" ", 1)[0].split("/", 1)[0])
    return None


def _answer_rtx_ssrcs(sdp: str) -> set[int]:
    """The RTX SSRCs of an answer's ``a=ssrc-group:FID <media> <rtx>`` lines."""
    out: set[int] = set()
    for line in sdp.splitlines():
        if line.startswith("a=ssrc-group:FID "):
            parts = line.split()
            if len(parts) == 3:
                out.add(int(parts[2]))
    return out


def _answer_ssrcs(sdp: str) -> dict[int, str]:
    out: dict[int, str] = {}
    kind = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind = line[2:].split(" ", 1)[0]
        elif line.startswith("a=ssrc:"):
            out[int(line[7:].split(" ", 1)[0])] = kind
    return out
