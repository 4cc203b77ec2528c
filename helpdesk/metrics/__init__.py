"""Response-time metrics (docs/metrics.md): per-ticket metric events, daily rollups and the
summaries that dashboards and the API read."""
