"""Fixtures: one app per run on the database of DATABASE_URL (a temporary SQLite file when unset),
migrated with Alembic, and emptied after every test so that tests never see each other's rows."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Configuration is read at import: point the instance folder at a temporary one first.
_INSTANCE = Path(tempfile.mkdtemp(prefix="helpdesk-test-"))
os.environ["HELPDESK_INSTANCE"] = str(_INSTANCE)
os.environ["HELPDESK_ENV"] = "test"

import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import text  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from devtools.graphsim.server import QuietRequestHandler  # noqa: E402
from devtools.graphsim.testing import SimulatorHandle, running_simulator  # noqa: E402
from helpdesk import create_app  # noqa: E402
from helpdesk.extensions import db  # noqa: E402
from tests.helpers.api import seed_every_kind  # noqa: E402
from tests.helpers.mail import start_smtp  # noqa: E402
from tests.helpers.webhooks import connect_example_channel  # noqa: E402
from tests.helpers.workers import RedisServer, free_port  # noqa: E402
from tests.helpers.world import World  # noqa: E402

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{_INSTANCE / 'test.db'}"
REDIS_URL = os.environ.get("REDIS_URL") or None
OUTPUT_DIR = Path(
    os.environ.get("TEST_OUTPUT_DIR", Path(__file__).resolve().parent.parent / "test-output")
)


SLOW_MARKERS = ("browser", "worker")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that drives a browser or starts a worker is slow by nature: `make test-fast`
    (`-m "not slow"`) leaves it out without every such test saying so twice."""
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)


def _reset_schema(app) -> None:
    """Drop whatever a previous run left, then build the schema through the migrations."""
    from flask_migrate import upgrade

    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        if db.engine.dialect.name != "postgresql":
            db.drop_all()
            with db.engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        upgrade()


@pytest.fixture(scope="session")
def app():
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
            "INSTANCE_DIR": str(_INSTANCE),
            "MEDIA_STORAGE": f"file://{_INSTANCE / 'media'}",
        }
    )
    _reset_schema(app)
    return app


@pytest.fixture(autouse=True)
def _context(app):
    with app.app_context():
        yield
        db.session.rollback()
        db.session.remove()
        _empty_tables()


def _empty_tables() -> None:
    tables = [t.name for t in db.metadata.sorted_tables]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture
def is_postgres(app) -> bool:
    return db.engine.dialect.name == "postgresql"


def table_counts() -> dict[str, int]:
    """Rows per table: compared before and after a refused action to prove nothing changed."""
    db.session.expire_all()
    return {
        t.name: db.session.execute(text(f"SELECT COUNT(*) FROM {t.name}")).scalar_one()
        for t in db.metadata.sorted_tables
    }


def race(app, work, count=2):
    """Run `work(session)` in `count` threads, each with its own connection, started together."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = [None] * count

    def run(index: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                outcomes[index] = work()
                db.session.commit()
            except Exception as exc:  # the outcome under test
                db.session.rollback()
                outcomes[index] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@contextmanager
def serving(app) -> Iterator[str]:
    """A WSGI app served for real on a free loopback port, in a thread: its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def sim(app, monkeypatch) -> Iterator[SimulatorHandle]:
    """The Graph API simulator, standing in for the Graph API of the app."""
    with running_simulator() as handle:
        monkeypatch.setitem(app.config, "GRAPH_API_BASE", handle.base_url)
        yield handle


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """Names answered from this dict, address literals as themselves, every other name by the
    real resolver."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
            if ":" in address
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


# Real worker processes -------------------------------------------------------------------


def wait_for(predicate, timeout: float = 45.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fresh(predicate)
        if value:
            return value
        time.sleep(every)
    return fresh(predicate)


def fresh(predicate):
    """Read in a short transaction of its own, so the worker is never kept waiting for a lock."""
    db.session.rollback()
    db.session.expire_all()
    try:
        return predicate()
    finally:
        db.session.rollback()


def _worker_environment(**more: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=DATABASE_URL, HELPDESK_ENV="test", **more)
    if REDIS_URL:
        env["REDIS_URL"] = REDIS_URL
    return env


@pytest.fixture
def worker_env() -> dict[str, str]:
    """What `celery_process` starts its workers with: this run's database and broker."""
    return _worker_environment(HEARTBEAT_SECONDS="1")


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


def drain_broker(app) -> list[tuple[str, list]]:
    """Take every task message waiting in the real broker's queues: (task name, args), oldest
    first within a queue."""
    celery = app.extensions["celery"]
    taken = []
    with celery.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in celery.conf.task_queues:
            while (message := channel.basic_get(queue.name, no_ack=True)) is not None:
                args, _kwargs, _embed = message.decode()
                taken.append((message.headers["task"], list(args)))
    return taken


@pytest.fixture
def sim_worker_env(sim) -> dict[str, str]:
    """A real worker's environment whose Send API is the simulator: a module whose workers send
    replies overrides `worker_env` with this one."""
    return _worker_environment(GRAPH_API_BASE=sim.base_url, HEARTBEAT_SECONDS="3600")


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A Redis of the test's own, which the test may stop and start again."""
    if not REDIS_URL:
        pytest.skip("needs Redis: runs when REDIS_URL is given")
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server program to stop and restart a Redis of its own")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


# Data ------------------------------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def webhook_channel():
    """The Instagram channel the example webhook bodies are addressed to."""
    return connect_example_channel()


@pytest.fixture
def seeded(app, monkeypatch) -> Iterator[dict]:
    """A brand with a few rows of every kind, another brand, and the first brand's admin token."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        """Webhook hosts resolve to a public address without any DNS; the rest (the broker's
        address) as usual: the patch is on the socket module every library shares."""
        if isinstance(host, str) and host.endswith(".example.test"):
            return [(2, 1, 6, "", ("93.184.216.34", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    rows = seed_every_kind()
    drain_broker(app)
    yield rows
    drain_broker(app)  # replies and reactions the fuzz queued for delivery: no worker runs here


@pytest.fixture
def smtp(app, monkeypatch) -> Iterator[list[str]]:
    """A local SMTP server as the app's SMTP_URL: the list of raw messages it took."""
    server = start_smtp()
    monkeypatch.setitem(app.config, "SMTP_URL", f"smtp://127.0.0.1:{server.server_address[1]}")
    yield server.messages  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
