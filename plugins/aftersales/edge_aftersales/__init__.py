"""edge-aftersales: service tickets, first-response tracking and FAQ answers (docs/aftersales.md)."""
