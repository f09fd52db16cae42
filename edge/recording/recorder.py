"""Recording rooms without transcoding: the tap, the writer thread, the control plane.

Media path cost. A recorded room's ``PublisherSession`` has ``tap`` set to the
room's ``RoomRecording``; for every ingress RTP packet the session calls
``tap.rtp(producer, data, now)``, which appends one tuple to a
``collections.deque`` (thread-safe, O(1), no lock, no syscall) unless the
deque is over ``[recording] buffer_packets`` (then the packet is counted as
dropped from the recording; viewers are not affected). Sender reports take
the same path. Nothing else happens on the event loop per packet.

One writer thread per node wakes every 200 ms, drains each recording's deque
into its producers' raw files (``rawfile.py``, buffered writes, one flush per
wake-up) and runs the few control commands queued in the same deque (close a
track, finish the recording), so commands stay ordered with the packets.

When the room's last publisher leaves (or ``DELETE /v1/rooms/{room}/recording``,
or shutdown), the recording is finished: the writer closes its files and a
child process (``python -m edge.recording.remux``) remuxes them into one
WebM/Matroska file. ``recording.json`` in the recording's directory is the
index entry (state, tracks, media file, duration, product markers); the node
keeps all of them in memory, loaded at start-up, and remuxes recordings an
earlier run left unfinished.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import secrets
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..observability.logging import get_logger
from .rawfile import RawTrackWriter

if TYPE_CHECKING:
    from ..config import Config
    from ..media.node import MediaNode
    from ..media.producer import Producer
    from ..media.publisher_session import PublisherSession

log = get_logger("edge.recording")

WRITER_INTERVAL = 0.2  # seconds between writer-thread drains (and file flushes)
RECORDING_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MIN_BUFFER_PACKETS = 500


def new_recording_id(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace ``path`` (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class RoomRecording:
    """A room being recorded: the tap its publisher sessions call on every packet."""

    def __init__(self, room: str, recording_id: str, path: Path, started_at: float, limit: int) -> None:
        self.room = room
        self.id = recording_id
        self.path = path
        self.limit = limit
        self.queue: deque[tuple[Any, float, Any]] = deque()
        self.dropped = 0
        self.sessions: set["PublisherSession"] = set()
        self.tracks: dict[str, dict[str, Any]] = {}  # producer id -> raw file metadata
        self.info: dict[str, Any] = {
            "room": room,
            "id": recording_id,
            "state": "recording",
            "started_at": started_at,
            "ended_at": None,
            "tracks": [],
            "markers": [],
        }
        # Writer-thread side (never touched by the event loop).
        self.files: dict[str, RawTrackWriter] = {}
        self.packets_written = 0
        self.dropped_reported = 0
        self.error: str | None = None

    # the tap: called by PublisherSession on the media path -------------------------------

    def rtp(self, producer: "Producer", data: bytes, now: float) -> None:
        queue = self.queue
        if len(queue) < self.limit:
            queue.append((producer.id, now, data))
        else:
            self.dropped += 1

    def sender_report(self, producer: "Producer", ntp: int, rtp_timestamp: int, now: float) -> None:
        self.queue.append((producer.id, now, (ntp, rtp_timestamp)))

    # control (event loop) ------------------------------------------------------------------

    def add_track(self, producer: "Producer", session: "PublisherSession") -> None:
        if producer.id in self.tracks:
            return
        n = len(self.tracks)
        meta = {
            "room": self.room,
            "recording": self.id,
            "producer": producer.id,
            "kind": producer.kind,
            "source": producer.source,
            "participant": producer.participant.identity,
            "role": producer.participant.role,
            "session": session.id,
            "order": producer.order,
            "added_at": time.time(),
            "file": f"{n:02d}-{_UNSAFE.sub('_', producer.id)}.rtp",
            "codecs": {
                str(pt): {"name": c.name, "clock_rate": c.clock_rate, "channels": c.channels}
                for pt, c in producer.codecs.items()
            },
        }
        self.tracks[producer.id] = meta
        self.info["tracks"].append(
            {k: meta[k] for k in ("producer", "kind", "source", "participant", "role", "file")}
        )

    def command(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the writer thread, after the packets queued so far."""
        self.queue.append((None, 0.0, fn))


class RecordingWriter:
    """The one thread that writes every recording's raw files."""

    def __init__(self, packets: Counter, dropped: Counter, interval: float = WRITER_INTERVAL) -> None:
        self.interval = interval
        self._recordings: list[RoomRecording] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._packets = packets
        self._dropped = dropped

    def add(self, rec: RoomRecording) -> None:
        with self._lock:
            self._recordings = [*self._recordings, rec]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="edge-recording-writer", daemon=True)
                self._thread.start()

    def remove(self, rec: RoomRecording) -> None:
        with self._lock:
            self._recordings = [r for r in self._recordings if r is not rec]

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            for rec in self._recordings:
                try:
                    self._drain(rec)
                except Exception:  # keep writing the other recordings
                    log.exception("recording_writer_failed", room=rec.room, recording=rec.id)
                dropped = rec.dropped
                if dropped != rec.dropped_reported:
                    self._dropped.inc(dropped - rec.dropped_reported)
                    rec.dropped_reported = dropped
            if self._stop and not any(r.queue for r in self._recordings):
                return

    def _drain(self, rec: RoomRecording) -> None:
        queue = rec.queue
        files = rec.files
        written = 0
        for _ in range(len(queue)):
            key, arrival, payload = queue.popleft()
            if key is None:
                try:
                    payload()
                except Exception:
                    log.exception("recording_command_failed", room=rec.room, recording=rec.id)
                continue
            if rec.error is not None:
                continue
            try:
                writer = files.get(key)
                if writer is None:
                    meta = rec.tracks.get(key)
                    if meta is None:
                        continue
                    rec.path.mkdir(parents=True, exist_ok=True)
                    writer = files[key] = RawTrackWriter(rec.path / meta["file"], meta)
                if payload.__class__ is bytes:
                    writer.rtp(arrival, payload)
                    written += 1
                else:
                    writer.sender_report(arrival, payload[0], payload[1])
            except OSError as exc:
                self._fail(rec, exc)
        if written:
            rec.packets_written += written
            self._packets.inc(written)
        if rec.error is None:
            try:
                for writer in files.values():
                    writer.flush()
            except OSError as exc:
                self._fail(rec, exc)

    def _fail(self, rec: RoomRecording, exc: OSError) -> None:
        rec.error = f"{exc.__class__.__name__}: {exc}"
        log.error("recording_write_failed", room=rec.room, recording=rec.id, error=rec.error)
        for writer in rec.files.values():
            try:
                writer.close()
            except OSError:
                pass


class Recorder:
    """Which rooms are recorded, their recordings, and the index of finished ones."""

    def __init__(self, config: "Config", node: "MediaNode", registry: CollectorRegistry) -> None:
        self.config = config
        self.settings = config.recording
        self.directory = config.recording_path
        self.node = node
        self.limit = max(MIN_BUFFER_PACKETS, self.settings.buffer_packets)
        self.active: dict[str, RoomRecording] = {}
        self.armed: set[str] = set()  # started over REST
        self.stopped: set[str] = set()  # stopped over REST (not recorded automatically)
        self.index: dict[str, list[dict[str, Any]]] = {}  # room -> recordings, oldest first
        self._tasks: set[asyncio.Task[Any]] = set()
        self._remux_slots = asyncio.Semaphore(1)
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="edge-recording-io")
        self.recordings_total = Counter(
            "edge_recordings", "Recordings finished, by result", ["result"], registry=registry
        )
        packets = Counter("edge_recording_packets", "RTP packets written to raw recordings", registry=registry)
        dropped = Counter(
            "edge_recording_dropped_packets",
            "RTP packets left out of a recording because its buffer was full",
            registry=registry,
        )
        Gauge("edge_recordings_active", "Rooms being recorded now", registry=registry).set_function(
            lambda: len(self.active)
        )
        self.writer = RecordingWriter(packets, dropped)

    # policy --------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self.settings.enabled)

    def wants(self, room: str) -> bool:
        if not self.enabled or room in self.stopped:
            return False
        if room in self.armed:
            return True
        rooms = self.settings.rooms
        return bool(self.settings.auto) and (not rooms or room in rooms)

    # media node events (control plane: once per session) ------------------------------------

    def on_node_event(self, name: str, kwargs: dict[str, Any]) -> None:
        session = kwargs.get("session")
        if session is None or getattr(session, "kind", "") != "whip":
            return
        try:
            if name == "session_started" and self.wants(session.room.name):
                self._attach(session)
            elif name == "session_ended" and session.tap is not None:
                self._detach(session, "shutdown" if kwargs.get("reason") == "shutdown" else "publisher_left")
        except Exception:  # a recording problem must never disturb the session itself
            log.exception("recording_event_failed", event=name, session=getattr(session, "id", None))

    def _publishers(self, room: str) -> list["PublisherSession"]:
        return [
            s
            for s in self.node.sessions.values()
            if s.kind == "whip" and s.room.name == room and s.connected_at is not None and not s.closed
        ]

    def _begin(self, room: str) -> RoomRecording:
        now = time.time()
        recording_id = new_recording_id(now)
        rec = RoomRecording(room, recording_id, self.directory / room / recording_id, now, self.limit)
        rec.info["node"] = self.config.node.name
        self.active[room] = rec
        self.index.setdefault(room, []).append(rec.info)
        self.writer.add(rec)
        self._save(rec)
        log.info("recording_started", room=room, recording=recording_id, path=str(rec.path))
        return rec

    def _attach(self, session: "PublisherSession") -> None:
        room = session.room.name
        rec = self.active.get(room) or self._begin(room)
        for producer in session.producers:
            rec.add_track(producer, session)
        rec.sessions.add(session)
        session.tap = rec
        for producer in session.producers:
            if producer.video:
                producer.keyframes.request()  # the file starts at a keyframe: get one now
        self._save(rec)

    def _detach(self, session: "PublisherSession", reason: str) -> None:
        rec: RoomRecording = session.tap
        session.tap = None
        rec.sessions.discard(session)
        for producer in session.producers:
            writer_key = producer.id

            def close(key: str = writer_key) -> None:
                writer = rec.files.pop(key, None)
                if writer is not None:
                    writer.close()

            rec.command(close)
        if not rec.sessions and self.active.get(rec.room) is rec:
            self._end(rec, reason)

    def _end(self, rec: RoomRecording, reason: str) -> None:
        if self.active.get(rec.room) is rec:
            del self.active[rec.room]
        for session in rec.sessions:
            session.tap = None
        rec.sessions.clear()
        rec.info["ended_at"] = time.time()
        rec.info["end_reason"] = reason
        rec.info["state"] = "finalizing"
        log.info("recording_ended", room=rec.room, recording=rec.id, reason=reason)
        self._spawn(self._finish(rec))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # finishing ----------------------------------------------------------------------------------

    async def _finish(self, rec: RoomRecording) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def finish() -> None:
            for writer in rec.files.values():
                writer.close()
            rec.files.clear()
            done.set_result(None)

        rec.command(finish)
        self.writer.wake()
        await asyncio.wrap_future(done)
        self.writer.remove(rec)
        rec.info["packets"] = rec.packets_written
        rec.info["dropped_packets"] = rec.dropped
        if rec.error is not None:
            rec.info["error"] = rec.error
        await self._remux(rec.info, rec.path)

    async def _remux(self, info: dict[str, Any], path: Path) -> None:
        async with self._remux_slots:
            summary = await self._run_remux(path)
        if "error" in summary:
            nothing = "no recorded frames" in summary["error"]
            info["state"] = "empty" if nothing else "failed"
            info["error"] = summary["error"]
            log.warning("recording_remux_failed", room=info["room"], recording=info["id"], error=summary["error"])
        else:
            info.update(summary)
            info["state"] = "ready"
            start = float(summary["media_start"])
            for marker in info.get("markers", []):
                marker["offset"] = round(min(max(0.0, marker["at"] - start), info["duration"]), 3)
            log.info(
                "recording_ready", room=info["room"], recording=info["id"], media=summary["media"],
                duration=summary["duration"], remux_seconds=summary.get("remux_seconds"),
            )
        self.recordings_total.labels(info["state"]).inc()
        await self._write(path / "recording.json", info)

    async def _run_remux(self, path: Path) -> dict[str, Any]:
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge.recording.remux", str(path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await proc.communicate()
            except asyncio.CancelledError:
                proc.kill()
                raise
        except OSError as exc:
            return {"error": f"remux could not start: {exc}"}
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            summary = json.loads(lines[-1]) if lines else {}
        except ValueError:
            summary = {}
        if not isinstance(summary, dict) or (proc.returncode != 0 and "error" not in summary):
            tail = err.decode(errors="replace").strip()[-500:]
            return {"error": f"remux exited with {proc.returncode}: {tail}"}
        return summary

    # persistence (one I/O thread, in order) ----------------------------------------------------

    async def _write(self, path: Path, info: dict[str, Any]) -> None:
        snapshot = json.loads(json.dumps(info))
        await asyncio.get_running_loop().run_in_executor(self._io, write_json, path, snapshot)

    def _save(self, rec: RoomRecording) -> None:
        self._spawn(self._write(rec.path / "recording.json", rec.info))

    def _scan(self) -> list[dict[str, Any]]:
        found = []
        if not self.directory.is_dir():
            return found
        for path in self.directory.glob("*/*/recording.json"):
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and info.get("room") == path.parent.parent.name and RECORDING_ID.match(
                str(info.get("id", ""))
            ):
                found.append(info)
        return found

    async def start(self) -> None:
        """Load the index; remux what an earlier run left unfinished (in the background)."""
        found = await asyncio.get_running_loop().run_in_executor(self._io, self._scan)
        for info in sorted(found, key=lambda i: i.get("started_at") or 0):
            room = info["room"]
            if room in self.active and self.active[room].id == info["id"]:
                continue
            self.index.setdefault(room, []).append(info)
            if info.get("state") in ("recording", "finalizing"):
                info["state"] = "finalizing"
                info.setdefault("end_reason", "recovered")
                log.info("recording_recovered", room=room, recording=info["id"])
                self._spawn(self._remux(info, self.directory / room / info["id"]))
        for recs in self.index.values():
            recs.sort(key=lambda i: i.get("started_at") or 0)

    async def close(self, timeout: float = 30.0) -> None:
        """Finish every recording (the node is stopping) and wait for the remuxes."""
        for rec in list(self.active.values()):
            self._end(rec, "shutdown")
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("recording_remux_unfinished", count=len(pending))
        await asyncio.get_running_loop().run_in_executor(None, self.writer.stop)
        self._io.shutdown(wait=True)

    async def idle(self) -> None:
        """Wait until no recording is being finished (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # REST -------------------------------------------------------------------------------------------

    def start_room(self, room: str) -> dict[str, Any]:
        self.stopped.discard(room)
        self.armed.add(room)
        if room not in self.active:
            for session in self._publishers(room):
                self._attach(session)
        return self.status(room)

    def stop_room(self, room: str) -> dict[str, Any]:
        self.armed.discard(room)
        self.stopped.add(room)
        rec = self.active.get(room)
        status = self.status(room)
        if rec is not None:
            self._end(rec, "stopped")
            status["stopped"] = rec.id
        return status

    def status(self, room: str) -> dict[str, Any]:
        rec = self.active.get(room)
        latest = self.latest(room)
        return {
            "room": room,
            "enabled": self.enabled,
            "recorded": self.wants(room),
            "recording": None if rec is None else {"id": rec.id, "started_at": rec.info["started_at"]},
            "latest": None if latest is None else latest["id"],
        }

    # markers ---------------------------------------------------------------------------------------

    def add_marker(self, room: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """A product pin while the room is recorded becomes a marker on its timeline."""
        rec = self.active.get(room)
        if rec is None:
            return None
        try:
            at = float(data.get("at") or time.time())
        except (TypeError, ValueError):
            at = time.time()
        marker = {
            "offset": round(max(0.0, at - rec.info["started_at"]), 3),  # final once remuxed
            "at": at,
            "sku": str(data.get("sku", ""))[:200],
            "title": str(data.get("title", ""))[:500],
        }
        for key in ("price", "currency"):
            if isinstance(data.get(key), (str, int, float)):
                marker[key] = data[key]
        rec.info["markers"].append(marker)
        self._save(rec)
        return marker

    # queries ----------------------------------------------------------------------------------------

    def recordings(self, room: str) -> list[dict[str, Any]]:
        return list(self.index.get(room, []))

    def get(self, room: str, recording_id: str) -> dict[str, Any] | None:
        if recording_id == "latest":
            return self.latest(room)
        for info in self.index.get(room, []):
            if info.get("id") == recording_id:
                return info
        return None

    def latest(self, room: str) -> dict[str, Any] | None:
        """The room's most recent playable recording."""
        for info in reversed(self.index.get(room, [])):
            if info.get("state") == "ready":
                return info
        return None

    def media_path(self, info: dict[str, Any]) -> Path | None:
        media = info.get("media")
        if info.get("state") != "ready" or not isinstance(media, str) or "/" in media:
            return None
        return self.directory / info["room"] / info["id"] / media


class RecordingsService:
    """``edge.service("recordings")``: what other plugins may ask (docs/events.md)."""

    def __init__(self, recorder: Recorder, public_url: str = "") -> None:
        self._recorder = recorder
        self._base = public_url.rstrip("/")

    def markers(self, room: str) -> list[dict[str, Any]]:
        """Product markers of the room's latest recording (the one being made if none is
        finished yet): ``{recording, offset, at, sku, title, price?, currency?, url}``."""
        info = self._recorder.latest(room)
        if info is None:
            rec = self._recorder.active.get(room)
            info = None if rec is None else rec.info
        if info is None:
            return []
        return [
            {**m, "recording": info["id"], "url": self.replay_url(room, m["offset"])}
            for m in info.get("markers", [])
        ]

    def replay_url(self, room: str, at_seconds: float = 0.0) -> str:
        """The replay page of the room's latest recording, starting ``at_seconds`` in."""
        from urllib.parse import quote

        url = f"{self._base}/replay/{quote(room, safe='')}"
        if at_seconds:
            url += f"?t={max(0.0, float(at_seconds)):.3f}".rstrip("0").rstrip(".")
        return url
