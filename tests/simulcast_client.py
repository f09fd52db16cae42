"""A simulcast WHIP publisher made of aiortc parts, for the tests.

aiortc cannot send simulcast, so this peer does what a browser does by hand:
its offer carries ``a=rid:<x> send`` + ``a=simulcast:send`` and the rid /
repaired-rid extmaps; once connected it encodes the same moving picture at
three sizes with aiortc's VP8 encoder and sends each layer as its own SSRC with
the rid extension (and mid), answering PLIs per layer with a keyframe and NACKs
with RTX packets tagged with repaired-rid. Audio is a normal aiortc Opus track.

With ``temporal=True`` each layer is encoded as Chromium encodes VP8 simulcast:
three temporal layers (L1T3, TIDs 0-2-1-2, libvpx's own layering through
PyAV), each packet's descriptor carrying TID, Y and TL0PICIDX.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from .clients import ToneAudioTrack, client_config, wait_connected

EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MID_ID, RID_ID, RRID_ID = 1, 10, 11

# rid -> (width, height, target bit/s): a 4:2:1 ladder like a browser's.
LAYERS = {"q": (160, 120, 120_000), "h": (320, 240, 350_000), "f": (640, 480, 1_000_000)}


class TemporalVp8Encoder:
    """libvpx VP8 with three temporal layers (through PyAV), packetized per RFC 7741.

    The frame pattern is libwebrtc's: TL0, TL2, TL1, TL2. TL2 frames reference
    only the last TL0/TL1 and nothing references them; TL1 references TL0 only
    (libvpx ``ts_layering_mode=3``). Y (layer sync) marks the frames that
    reference TL0 only. A keyframe is made at the next TL0 frame (libwebrtc
    also sends keyframes on TL0 only). Error-resilient mode and no frame drops,
    so that a receiver missing the TL2 (or TL1) frames decodes the rest intact.
    """

    PATTERN = (0, 2, 1, 2)
    SYNC = (False, True, True, False)
    MAX_PAYLOAD = 1100

    def __init__(self) -> None:
        self.target_bitrate = 500_000
        self.codec: Any = None
        self.frame_index = 0
        self.picture_id = random.getrandbits(15)
        self.tl0 = random.getrandbits(8)
        self.keyframe_pending = True
        self.tids: list[int] = []  # the TID of every frame encoded

    def _open(self, width: int, height: int) -> None:
        kbps = self.target_bitrate // 1000
        c = av.CodecContext.create("libvpx", "w")
        c.width, c.height, c.pix_fmt = width, height, "yuv420p"
        c.time_base = fractions.Fraction(1, 90000)
        c.bit_rate = self.target_bitrate
        c.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "drop-frame": "0",
            "error-resilient": "1",
            "ts-parameters": (
                f"ts_number_layers=3:ts_target_bitrate={kbps * 4 // 10},{kbps * 6 // 10},{kbps}"
                ":ts_rate_decimator=4,2,1:ts_periodicity=4:ts_layer_id=0,2,1,2:ts_layering_mode=3"
            ),
        }
        c.open()
        self.codec = c

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if self.codec is None:
            self._open(frame.width, frame.height)
        slot = self.frame_index % 4
        self.frame_index += 1
        self.keyframe_pending = self.keyframe_pending or force_keyframe
        image = frame.reformat(format="yuv420p")
        image.pts = frame.pts
        keyframe = self.keyframe_pending and slot == 0
        if keyframe:
            image.pict_type = av.video.frame.PictureType.I
            self.keyframe_pending = False
        data = b"".join(bytes(p) for p in self.codec.encode(image))
        tid = self.PATTERN[slot]
        self.tids.append(tid)
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        payloads = []
        for at in range(0, len(data), self.MAX_PAYLOAD):
            descriptor = bytes([0x90 if at == 0 else 0x80, 0xE0]) + struct.pack(
                "!HBB", 0x8000 | self.picture_id, self.tl0, tid << 6 | (0x20 if self.SYNC[slot] else 0)
            )
            payloads.append(descriptor + data[at : at + self.MAX_PAYLOAD])
        return payloads, int(frame.pts)


@dataclass
class _Layer:
    rid: str
    width: int
    height: int
    bitrate: int
    ssrc: int = field(default_factory=lambda: random.getrandbits(32) | 1)
    rtx_ssrc: int = field(default_factory=lambda: random.getrandbits(32) | 1)
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    rtx_seq: int = field(default_factory=lambda: random.getrandbits(16))
    encoder: Vp8Encoder | TemporalVp8Encoder = field(default_factory=Vp8Encoder)
    keyframe: bool = True
    paused: bool = False
    history: dict[int, tuple[int, bool, bytes]] = field(default_factory=dict)  # seq -> (ts, marker, payload)
    packets: int = 0
    keyframes: int = 0
    plis: int = 0
    nacked: int = 0


def _munge_offer(sdp: str, rids: list[str]) -> str:
    out: list[str] = []
    section = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        if section == "video" and (line.startswith("a=ssrc") or line.startswith("a=extmap:")):
            continue  # browsers announce no SSRCs for rid simulcast; extmaps are ours
        out.append(line)
        if section == "video" and line.startswith("a=mid:"):
            out += [
                f"a=extmap:{MID_ID} {EXT_MID}",
                f"a=extmap:{RID_ID} {EXT_RID}",
                f"a=extmap:{RRID_ID} {EXT_RRID}",
            ]
    out += [f"a=rid:{rid} send" for rid in rids]
    out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(out) + "\r\n"


def _answer_video(sdp: str) -> tuple[int, int | None, str]:
    """(VP8 payload type, its RTX payload type, mid) of the answer's video m-line."""
    section, vp8, rtx, mid = "", 0, None, ""
    apt: dict[int, int] = {}
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        if section != "video":
            continue
        if line.startswith("a=mid:"):
            mid = line[6:]
        elif line.startswith("a=rtpmap:") and "VP8/90000" in line:
            vp8 = vp8 or int(line[9:].split(" ")[0])
        elif line.startswith("a=fmtp:") and "apt=" in line:
            pt, params = line[7:].split(" ", 1)
            apt[int(params.split("apt=")[1].split(";")[0])] = int(pt)
    if vp8:
        rtx = apt.get(vp8)
    return vp8, rtx, mid


# Browsers send Opus at about 32 kbit/s; aiortc's encoder defaults to 96 kbit/s,
# which would make this stand-in for a Chromium seller three times as costly
# on a viewer's link as the real one (and RED on top multiplies it).
OPUS_BITRATE = 32_000


def _browser_like_opus() -> None:
    """Opus encoders aiortc creates in this process run at OPUS_BITRATE."""
    from aiortc import rtcrtpsender

    original = rtcrtpsender.get_encoder
    if getattr(original, "browser_like", False):
        return

    def get_encoder(codec: object) -> object:
        encoder = original(codec)
        if getattr(codec, "mimeType", "").lower() == "audio/opus":
            encoder.codec.bit_rate = OPUS_BITRATE  # type: ignore[attr-defined]
        return encoder

    get_encoder.browser_like = True  # type: ignore[attr-defined]
    rtcrtpsender.get_encoder = get_encoder


@dataclass
class SimulcastPublisher:
    url: str
    room: str
    token: str
    rids: list[str] = field(default_factory=lambda: ["q", "h", "f"])
    fps: int = 15
    temporal: bool = False  # encode each layer with three temporal layers (TemporalVp8Encoder)
    pc: RTCPeerConnection = field(init=False)
    location: str = ""
    layers: dict[str, _Layer] = field(default_factory=dict)
    answer_sdp: str = ""
    frames: int = 0  # pictures captured (each sent on every unpaused layer)
    _task: asyncio.Task[None] | None = None

    async def start(self) -> httpx.Response:
        _browser_like_opus()
        self.pc = RTCPeerConnection(client_config())
        self.pc.addTrack(ToneAudioTrack())
        self.pc.addTransceiver("video", direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = _munge_offer(self.pc.localDescription.sdp, self.rids)
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
        self.answer_sdp = r.text
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await wait_connected(self.pc)
        for rid in self.rids:
            w, h, rate = LAYERS[rid]
            layer = _Layer(rid, w, h, rate)
            if self.temporal:
                layer.encoder = TemporalVp8Encoder()
            layer.encoder.target_bitrate = rate
            self.layers[rid] = layer
        self._task = asyncio.ensure_future(self._run())
        return r

    @property
    def _dtls(self) -> Any:
        return self.pc.getTransceivers()[0].sender.transport

    def remote_port(self) -> int:
        """The node's port of the nominated ICE pair (where this peer's media goes)."""
        return int(self._dtls.transport._connection._nominated[1].remote_candidate.port)

    def by_ssrc(self, ssrc: int) -> _Layer | None:
        return next((layer for layer in self.layers.values() if layer.ssrc == ssrc), None)

    async def _run(self) -> None:
        pt, rtx_pt, mid = _answer_video(self.answer_sdp)
        ext = HeaderExtensionsMap()
        ext.configure(
            RTCRtpParameters(
                headerExtensions=[
                    RTCRtpHeaderExtensionParameters(id=MID_ID, uri=EXT_MID),
                    RTCRtpHeaderExtensionParameters(id=RID_ID, uri=EXT_RID),
                    RTCRtpHeaderExtensionParameters(id=RRID_ID, uri=EXT_RRID),
                ]
            )
        )
        dtls = self._dtls
        original_rtcp = dtls._handle_rtcp_data

        async def on_rtcp(data: bytes) -> None:
            await self._feedback(data, rtx_pt, mid, ext)
            await original_rtcp(data)

        dtls._handle_rtcp_data = on_rtcp
        rng = np.random.default_rng(3)
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            self.frames = n
            pts = int(n * 90000 / self.fps)
            for layer in self.layers.values():
                if layer.paused:
                    continue
                img = rng.integers(0, 60, (layer.height, layer.width, 3), dtype=np.uint8)
                x = (n * 4 * layer.width // 160) % layer.width
                img[:, x : x + max(2, layer.width // 16)] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
                payloads, timestamp = layer.encoder.encode(frame, force_keyframe=layer.keyframe)
                if layer.keyframe:
                    layer.keyframes += 1
                layer.keyframe = False
                for i, payload in enumerate(payloads):
                    packet = RtpPacket(
                        payload_type=pt,
                        sequence_number=layer.seq,
                        timestamp=timestamp,
                        ssrc=layer.ssrc,
                        marker=i == len(payloads) - 1,
                        payload=payload,
                    )
                    packet.extensions.mid = mid
                    packet.extensions.rtp_stream_id = layer.rid
                    layer.history[layer.seq] = (timestamp, packet.marker, payload)
                    layer.history.pop((layer.seq - 512) & 0xFFFF, None)
                    layer.seq = (layer.seq + 1) & 0xFFFF
                    layer.packets += 1
                    await dtls._send_rtp(packet.serialize(ext))
            delay = start + n / self.fps - time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def _feedback(self, data: bytes, rtx_pt: int | None, mid: str, ext: HeaderExtensionsMap) -> None:
        pos = 0
        while pos + 12 <= len(data):
            fmt, pt = data[pos] & 0x1F, data[pos + 1]
            length = (struct.unpack_from("!H", data, pos + 2)[0] + 1) * 4
            media_ssrc = struct.unpack_from("!I", data, pos + 8)[0]
            layer = self.by_ssrc(media_ssrc)
            if layer is not None and pt == 206 and fmt == 1:  # PLI
                layer.plis += 1
                layer.keyframe = True
            elif layer is not None and pt == 205 and fmt == 1 and rtx_pt is not None:  # NACK
                for off in range(pos + 12, pos + length, 4):
                    pid, blp = struct.unpack_from("!HH", data, off)
                    lost = [pid] + [(pid + i + 1) & 0xFFFF for i in range(16) if blp >> i & 1]
                    for seq in lost:
                        kept = layer.history.get(seq)
                        if kept is None:
                            continue
                        timestamp, marker, payload = kept
                        layer.nacked += 1
                        rtx = RtpPacket(
                            payload_type=rtx_pt,
                            sequence_number=layer.rtx_seq,
                            timestamp=timestamp,
                            marker=marker,
                            ssrc=layer.rtx_ssrc,
                            payload=struct.pack("!H", seq) + payload,
                        )
                        rtx.extensions.mid = mid
                        rtx.extensions.repaired_rtp_stream_id = layer.rid
                        layer.rtx_seq = (layer.rtx_seq + 1) & 0xFFFF
                        await self._dtls._send_rtp(rtx.serialize(ext))
            pos += length

    async def stop(self, delete: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
        if delete and self.location:
            async with httpx.AsyncClient() as client:
                await client.delete(
                    self.url + self.location, headers={"Authorization": f"Bearer {self.token}"}
                )
