"""Browser end-to-end tests: headless Chromium publishes via WHIP and views via WHEP."""
