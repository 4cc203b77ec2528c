"""A real Celery worker and beat, consuming from the configured broker (Redis when REDIS_URL is
set, the embedded SQLite broker otherwise)."""

from __future__ import annotations

import pytest

from helpdesk.heartbeat import last_beat
from tests.conftest import wait_for


@pytest.mark.worker
def test_worker_runs_a_task_sent_through_the_broker(app, celery_process):
    # Queued before the worker exists: the broker must keep it. Sent through this app's Celery:
    # the default Celery app is whichever app of this process was created last.
    app.extensions["celery"].send_task("workers.tasks.heartbeat.heartbeat")
    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    beat = wait_for(last_beat)
    assert beat is not None and beat.count >= 1


@pytest.mark.worker
def test_beat_schedules_the_heartbeat_on_a_running_worker(app, celery_process, tmp_path):
    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"))
    beat = wait_for(lambda: (row := last_beat()) is not None and row.count >= 3 and row)
    assert beat, "beat did not schedule three heartbeats in time"
