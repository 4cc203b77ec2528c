"""A real Celery worker and beat, consuming from the configured broker (Redis when REDIS_URL is
set, the embedded SQLite broker otherwise)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpdesk.extensions import db
from helpdesk.heartbeat import last_beat
from tests.conftest import DATABASE_URL, REDIS_URL


def _wait_for(predicate, timeout: float = 45.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = _fresh(predicate)
        if value:
            return value
        time.sleep(every)
    return _fresh(predicate)


def _fresh(predicate):
    """Read in a short transaction of its own, so the worker is never kept waiting for a lock."""
    db.session.rollback()
    db.session.expire_all()
    try:
        return predicate()
    finally:
        db.session.rollback()


@pytest.fixture
def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=DATABASE_URL,
        HELPDESK_ENV="test",
        HEARTBEAT_SECONDS="1",
    )
    if REDIS_URL:
        env["REDIS_URL"] = REDIS_URL
    return env


@pytest.fixture
def celery_process(worker_env, tmp_path):
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        log = open(tmp_path / f"celery-{len(processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", *args, "--loglevel=INFO"],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.worker
def test_worker_runs_a_task_sent_through_the_broker(app, celery_process):
    from workers.tasks.heartbeat import heartbeat

    heartbeat.delay()  # queued before the worker exists: the broker must keep it
    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    beat = _wait_for(last_beat)
    assert beat is not None and beat.count >= 1


@pytest.mark.worker
def test_beat_schedules_the_heartbeat_on_a_running_worker(app, celery_process, tmp_path):
    celery_process("worker", "--pool=solo", "--without-mingle", "--without-gossip")
    celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"))
    beat = _wait_for(lambda: (row := last_beat()) is not None and row.count >= 3 and row)
    assert beat, "beat did not schedule three heartbeats in time"
