"""edge-loyalty: points, growth value, tiers and privileges for live commerce (docs/loyalty.md)."""
