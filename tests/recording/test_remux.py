"""The raw file format and the remuxer, in-process, on real encoder output."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import av
import pytest

from edge.recording import rawfile
from edge.recording.remux import NTP_EPOCH_OFFSET, load_tracks, opus_head, remux

from .media import FPS, VIDEO_CLOCK, encode_opus, encode_video, rtp_bytes, track_writer

T0 = 1_700_000_000.0  # the node's wall clock when the publisher captured its first frame
SENDER_CLOCK_AHEAD = 5.0  # the publisher's NTP clock runs 5 s ahead of the node's
VIDEO_DELAY, AUDIO_DELAY = 0.010, 0.150  # network + sender queueing, per track


def ntp(seconds: float) -> int:
    whole = int(seconds) + NTP_EPOCH_OFFSET
    return (whole << 32) | int((seconds % 1) * 2**32)


# -- raw file ---------------------------------------------------------------------------------


def test_raw_file_round_trip_and_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "t.rtp"
    writer = rawfile.RawTrackWriter(path, {"producer": "p1", "codecs": {"96": {"name": "vp8"}}})
    writer.rtp(1.5, b"\x80\x60" + b"x" * 20)
    writer.sender_report(2.0, 123 << 32, 4567)
    writer.rtp(2.5, b"\x80\x60" + b"y" * 1200)
    writer.close()
    meta, records = rawfile.read_records(path)
    assert meta == {"producer": "p1", "codecs": {"96": {"name": "vp8"}}}
    got = list(records)
    assert [(k, a) for k, a, _ in got] == [(rawfile.RTP, 1.5), (rawfile.SR, 2.0), (rawfile.RTP, 2.5)]
    assert got[0][2] == b"\x80\x60" + b"x" * 20
    assert rawfile.parse_sender_report(got[1][2]) == (123 << 32, 4567)
    # the header is magic, a length and JSON; each record is type, arrival, length, body
    data = path.read_bytes()
    assert data.startswith(rawfile.MAGIC)
    (hlen,) = struct.unpack_from("!I", data, 8)
    assert struct.unpack_from("!BdI", data, 12 + hlen) == (1, 1.5, 22)
    # a node killed mid-write leaves half a record: everything before it still reads
    path.write_bytes(data[:-600])
    assert len(list(rawfile.read_records(path)[1])) == 2
    path.write_bytes(b"not a recording")
    with pytest.raises(ValueError, match="not an edge raw recording"):
        rawfile.read_meta(path)


# -- remux ------------------------------------------------------------------------------------


def write_recording(
    directory: Path, codec: str, *, sender_reports: bool, frames: int = 30, shuffle: bool = True
) -> list[bytes]:
    """One second of video (+ Opus) as a publisher would send it; returns the video frames.

    Sequence numbers and timestamps wrap; some video packets arrive out of order
    and one twice (a retransmission).
    """
    directory.mkdir(parents=True, exist_ok=True)
    encoded = encode_video(codec, frames, keyframes=(0,))
    video = track_writer(directory, "cam", "video", codec, 96, order=1)
    records = []
    seq, ts0 = 65500, 2**32 - 30000
    for i, f in enumerate(encoded):
        sent = T0 + i / FPS
        for k, payload in enumerate(f.payloads):
            packet = rtp_bytes(96, 1111, seq, ts0 + f.timestamp, k == len(f.payloads) - 1, payload)
            records.append((sent + VIDEO_DELAY + 0.0001 * k, packet))
            seq += 1
    if shuffle:
        rng = random.Random(3)
        for _ in range(5):
            i = rng.randrange(len(records) - 4)
            records[i], records[i + 3] = records[i + 3], records[i]
        records.insert(40, records[20])  # a duplicate
    for arrival, packet in records:
        video.rtp(arrival, packet)
        if sender_reports and arrival >= T0 + 0.5 and not getattr(video, "_sr", False):
            video._sr = True  # type: ignore[attr-defined]
            send = T0 + 0.5
            video.sender_report(arrival, ntp(send + SENDER_CLOCK_AHEAD), (ts0 + int(0.5 * VIDEO_CLOCK)) & 0xFFFFFFFF)
    video.close()
    audio = track_writer(directory, "mic", "audio", "opus", 111, order=0)
    ats0 = 1000
    for i, (payload, timestamp) in enumerate(encode_opus(50)):
        sent = T0 + i * 0.02
        audio.rtp(sent + AUDIO_DELAY, rtp_bytes(111, 2222, 7 + i, ats0 + timestamp, False, payload))
        if sender_reports and i in (10, 40):
            audio.sender_report(sent + AUDIO_DELAY, ntp(sent + SENDER_CLOCK_AHEAD), ats0 + timestamp)
    audio.close()
    return [f.data for f in encoded]


def read_back(path: Path) -> dict[str, list[av.Packet]]:
    with av.open(str(path)) as container:
        streams = {s.index: s.codec_context.name for s in container.streams}
        out: dict[str, list[av.Packet]] = {name: [] for name in streams.values()}
        for packet in container.demux():
            if packet.size:
                out[streams[packet.stream.index]].append(packet)
    return out


def test_remux_vp8_opus_to_webm_with_sender_report_sync(tmp_path: Path) -> None:
    sent = write_recording(tmp_path, "vp8", sender_reports=True)
    summary = remux(tmp_path)
    assert summary["media"] == "replay.webm" and summary["media_type"] == "video/webm"
    assert summary["video"]["timing"] == summary["audio"]["timing"] == "sender_report"
    assert summary["video"]["frames"] == 30 and summary["video"]["frames_dropped"] == 0
    assert (summary["video"]["width"], summary["video"]["height"]) == (320, 240)
    assert summary["audio"]["frames"] == 50
    # Both tracks were captured from T0: with the SRs they start together, although
    # the audio arrived 140 ms after the video.
    assert summary["media_start"] == pytest.approx(T0 + VIDEO_DELAY, abs=0.002)
    assert summary["duration"] == pytest.approx(1.0, abs=0.03)

    packets = read_back(tmp_path / "replay.webm")
    assert [bytes(p) for p in packets["vp8"]] == sent  # reordered, deduplicated, unwrapped
    assert packets["vp8"][0].is_keyframe
    assert [p.pts for p in packets["vp8"][:3]] == [0, 33, 67]
    assert abs(packets["opus"][0].pts - packets["vp8"][0].pts) <= 2
    with av.open(str(tmp_path / "replay.webm")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.extradata == opus_head(2)
        sizes = {(f.width, f.height) for f in container.decode(video=0)}
    assert sizes == {(320, 240)}


def test_remux_without_sender_reports_uses_arrival_times(tmp_path: Path) -> None:
    write_recording(tmp_path, "vp8", sender_reports=False, shuffle=False)
    summary = remux(tmp_path)
    assert summary["video"]["timing"] == summary["audio"]["timing"] == "arrival"
    packets = read_back(tmp_path / "replay.webm")
    # each track placed by its own arrival times: the audio starts 140 ms in
    assert packets["vp8"][0].pts == 0
    assert packets["opus"][0].pts == pytest.approx((AUDIO_DELAY - VIDEO_DELAY) * 1000, abs=2)


def test_remux_h264_to_matroska(tmp_path: Path) -> None:
    sent = write_recording(tmp_path, "h264", sender_reports=True, frames=15)
    summary = remux(tmp_path)
    assert summary["media"] == "replay.mkv" and summary["media_type"] == "video/x-matroska"
    with av.open(str(tmp_path / "replay.mkv")) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.extradata  # SPS/PPS in the header (avcC)
        frames = list(container.decode(video=0))
    assert len(frames) == len(sent) == 15
    assert {(f.width, f.height) for f in frames} == {(320, 240)}


def test_tracks_and_program_choice(tmp_path: Path) -> None:
    write_recording(tmp_path, "vp8", sender_reports=False, frames=6, shuffle=False)
    guest = track_writer(tmp_path, "guest", "video", "vp8", 96, participant="guest", role="cohost", order=5)
    guest.close()  # no packets: not a track
    tracks = load_tracks(tmp_path)
    assert sorted(t.meta["producer"] for t in tracks) == ["cam", "mic"]
    assert {t.codec for t in tracks} == {"vp8", "opus"}


def test_nothing_to_remux(tmp_path: Path) -> None:
    track_writer(tmp_path, "cam", "video", "vp8", 96).close()
    with pytest.raises(ValueError, match="no recorded frames"):
        remux(tmp_path)
