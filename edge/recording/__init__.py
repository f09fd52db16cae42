"""Recording rooms without transcoding, and their product-marker timelines.

``recorder.py`` taps publishers' packets and writes raw files off the event
loop, ``remux.py`` turns them into WebM/Matroska in a child process,
``depacketize.py`` and ``rawfile.py`` are the formats, ``plugin.py`` turns
``commerce.product_pinned`` events into markers. docs/recording.md is the
operator's guide.
"""

from .plugin import NAME as PLUGIN_NAME
from .plugin import RecordingPlugin
from .recorder import Recorder, RecordingsService, RoomRecording

__all__ = ["PLUGIN_NAME", "Recorder", "RecordingPlugin", "RecordingsService", "RoomRecording"]
