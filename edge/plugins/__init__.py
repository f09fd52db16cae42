"""Plugin system: ``hookimpl`` to implement hooks, the ``Edge`` facade they get."""

import pluggy

hookimpl = pluggy.HookimplMarker("edge")

__all__ = ["hookimpl"]
