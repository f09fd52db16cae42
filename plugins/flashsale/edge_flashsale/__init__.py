"""edge-flashsale: flash sales with exact stock, idempotent reservations and holds (docs/flashsale.md)."""
