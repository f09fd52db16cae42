"""The node's built-in recording plugin: product pins become markers on the timeline.

First-party code uses the same hooks as any plugin: this object is registered
with the node's PluginHost (``edge/app.py``) under the name ``edge.recording``
and hears ``commerce.product_pinned`` through ``edge_event`` (docs/events.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..plugins import hookimpl

if TYPE_CHECKING:
    from .recorder import Recorder

NAME = "edge.recording"
PINNED = "commerce.product_pinned"


class RecordingPlugin:
    def __init__(self, recorder: "Recorder") -> None:
        self.recorder = recorder

    @hookimpl
    def edge_event(self, name: str, data: Any) -> None:
        if name != PINNED or not isinstance(data, dict):
            return
        room = data.get("room")
        if isinstance(room, str) and room:
            self.recorder.add_marker(room, data)
