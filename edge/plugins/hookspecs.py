"""The plugin author's contract: every hook edge calls, with its arguments.

Plugins implement hooks with ``@hookimpl`` (``from edge.plugins import hookimpl``)
and are loaded from the ``edge`` entry-point group or from ``[plugins] load``
in the config. docs/plugins.md documents each hook with an example; a test
fails when a hook here is undocumented, documented with another signature, or
untested.

How edge calls hooks (deliberately, not pluggy's default chain):

* every implementation is called on its own: one that raises is logged with
  the plugin's name and counted in ``edge_plugin_errors_total``, and the others
  still run;
* an implementation may be ``async``; it then runs within a time budget
  (``plugin_timeout_ms``), is cancelled when over it and counted in
  ``edge_plugin_timeouts_total``;
* order is pluggy's: the most recently registered plugin first, ``tryfirst`` /
  ``trylast`` honoured. Hook wrappers are not supported.
* events from the media plane (room, participant, producer hooks) are
  fire-and-forget: the media plane never waits for a plugin.

The ``edge`` argument of every hook is the plugin-facing ``Edge`` facade
(edge/plugins/api.py): config, rooms, broadcast/send, metrics, data dir.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("edge")


@hookspec
def edge_configure(edge, config):  # type: ignore[no-untyped-def]
    """Called once at start-up, before ``edge_startup``, with this plugin's own
    config section ``[plugins.<name>]`` as a dict (empty if absent). Raise
    ``ValueError`` to refuse a bad config: the node then does not start."""


@hookspec
def edge_startup(edge):  # type: ignore[no-untyped-def]
    """The node has started (HTTP is about to accept requests). May be async."""


@hookspec
def edge_shutdown(edge):  # type: ignore[no-untyped-def]
    """The node is stopping; flush and close what the plugin holds. May be async."""


@hookspec
def edge_message_types(edge):  # type: ignore[no-untyped-def]
    """Return a list of ``MessageType`` this plugin accepts from clients: name,
    roles allowed to send it, data fields and their types, per-role rate limit,
    and whether it is broadcast to the room after the hook chain."""


@hookspec
def edge_room_created(edge, room):  # type: ignore[no-untyped-def]
    """A room came into existence (its first participant arrived). ``room`` is a
    ``RoomInfo`` (name, created_at)."""


@hookspec
def edge_room_closed(edge, room):  # type: ignore[no-untyped-def]
    """The last participant left the room; ``room`` is a ``RoomInfo``."""


@hookspec
def edge_participant_joined(edge, room, participant):  # type: ignore[no-untyped-def]
    """A participant entered ``room`` (a name) for the first time: by WHIP,
    WHEP, data channel or WebSocket. ``participant`` is a ``ParticipantInfo``
    (identity, role, region)."""


@hookspec
def edge_participant_left(edge, room, participant):  # type: ignore[no-untyped-def]
    """The participant's last session or connection in ``room`` ended."""


@hookspec
def edge_connection_opened(edge, room, participant, connection):  # type: ignore[no-untyped-def]
    """A message connection (WebSocket or data channel) of ``participant`` opened
    in ``room``; ``connection`` is a ``ConnectionInfo`` (id, kind). The place to
    greet it or send history: ``edge.send_to(room, identity, type, data,
    connection=connection.id)``."""


@hookspec
def edge_producer_added(edge, room, producer):  # type: ignore[no-untyped-def]
    """A publisher's track went live in ``room``. ``producer`` is a
    ``ProducerInfo`` (id, kind, source, participant identity)."""


@hookspec
def edge_producer_removed(edge, room, producer):  # type: ignore[no-untyped-def]
    """A publisher's track ended (``ProducerInfo``)."""


@hookspec
def edge_session_started(edge, room, participant, session):  # type: ignore[no-untyped-def]
    """A WHIP or WHEP session's media started flowing (ICE and DTLS done).
    ``session`` is a ``SessionInfo`` (id, kind "whip"/"whep", started_at,
    connected_at); ``participant`` a ``ParticipantInfo``."""


@hookspec
def edge_session_ended(edge, room, participant, session):  # type: ignore[no-untyped-def]
    """A WHIP or WHEP session ended (DELETE, peer gone, timeout, shutdown).
    ``session.media_seconds`` is how long its media flowed, measured by the node
    (0 if it never connected): the watch time of a viewer."""


@hookspec
def edge_quality_changed(edge, room, participant, session, quality, previous):  # type: ignore[no-untyped-def]
    """A viewer's quality of experience changed level (good/fair/poor),
    simulcast layer or VP8 temporal layer. ``quality`` and ``previous`` are dicts (level, layer,
    estimated_bitrate, fraction_lost, rtt_ms, stall_rate, join_ms, ...;
    ``previous`` is empty the first time). Fire-and-forget: for alerting on
    slow links."""


@hookspec
def edge_event(edge, name, data, source):  # type: ignore[no-untyped-def]
    """A plugin published a domain event with ``edge.emit(name, data)``, e.g.
    ``commerce.order_paid``: how plugins build on each other without importing
    each other. ``source`` is the emitting plugin's name. Fire-and-forget."""


@hookspec
def edge_message_received(edge, message):  # type: ignore[no-untyped-def]
    """A validated client message is on its way through the room. ``message`` is
    a ``MessageContext``: read or change ``message.envelope`` (type, data), call
    ``message.reply(type, data)`` to answer the sender, ``message.reject(code,
    reason)`` to refuse it (the sender gets an ``error`` envelope, later plugins
    are not called and nothing is delivered), or set ``message.broadcast`` to
    choose whether the (possibly transformed) envelope goes to the whole room.
    May be async (within the time budget)."""


@hookspec
def edge_message_delivered(edge, envelope, recipients):  # type: ignore[no-untyped-def]
    """An envelope was fanned out to ``recipients`` connections of its room
    (client messages after the hook chain, and plugin broadcasts)."""


@hookspec
def edge_http_routes(edge):  # type: ignore[no-untyped-def]
    """Return a list of Starlette ``Route``s; they are mounted under
    ``/v1/plugins/<name>/``. Handlers check tokens with
    ``edge.authenticate(request, roles)``."""


@hookspec
def edge_tick(edge, now):  # type: ignore[no-untyped-def]
    """Called about once a second with the wall-clock time ``now`` (seconds):
    for coalesced broadcasts, expiries and housekeeping. May be async."""
