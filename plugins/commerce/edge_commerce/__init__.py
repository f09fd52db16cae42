"""edge-commerce: catalog, product pins, orders and room analytics (docs/commerce.md)."""
