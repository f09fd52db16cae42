"""edge-segments: viewer profiles, segments and their actions, coupons, referrals,
draws and polls, business metrics (docs/segments.md)."""
