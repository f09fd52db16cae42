"""edge: a real-time media edge node for live commerce."""

__version__ = "0.1.0"
