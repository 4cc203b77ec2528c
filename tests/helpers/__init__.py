"""What several test modules share, so that no test module imports another.

`console` signs in and posts forms as a browser does, `world` builds a small brand, `api` drives
the REST API with tokens, `webhooks` signs and posts Instagram deliveries, `workers` starts real
Celery workers and a Redis of a test's own, `metrics` writes the two-week history the metrics and
dashboard tests measure, `dashboard` says how that history looks on the page, `dm` writes
messages straight through the DM service, `rows` snapshots every table, `fuzz` generates API
calls, and `browser` drives Chromium. Fixtures built on them live in tests/conftest.py.
"""
