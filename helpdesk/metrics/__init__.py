"""Response-time metrics (SPEC §3): per-ticket metric events, daily rollups and the summaries
that dashboards and the API read."""
