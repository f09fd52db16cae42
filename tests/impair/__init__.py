"""Reusable network impairment for tests: hosts in namespaces, shaped links.

    from tests.impair import Network, PROFILES, Impairment

    with Network() as net:
        node, viewer = net.host("node"), net.host("viewer")
        viewer.link.apply(PROFILES["3G"])           # both directions
        viewer.link.down.set(rate_kbit=500)         # runtime change, one knob
        proc = viewer.popen([...])                  # a process inside the namespace

See docs/impairment.md.
"""

from .netns import Network, NetNs, cleanup_stale, existing_namespaces
from .profiles import PROFILES, Phase, Profile, play
from .shaping import CLEAR, Direction, Impairment, Link, delay_backend, netem_available

__all__ = [
    "CLEAR",
    "Direction",
    "Impairment",
    "Link",
    "NetNs",
    "Network",
    "PROFILES",
    "Phase",
    "Profile",
    "cleanup_stale",
    "delay_backend",
    "existing_namespaces",
    "netem_available",
    "play",
]
