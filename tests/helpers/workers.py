"""Real worker processes and a Redis of a test's own, for the tests that kill or cut them."""

from __future__ import annotations

import socket
import subprocess
import time

from helpdesk import queueing

TOKEN = "page-token-abcd"
WORKER = (
    "worker",
    "--pool=solo",
    "--without-mingle",
    "--without-gossip",
    "--include=workers.tasks.delivery",
)


def purge_broker(app) -> None:
    """Tasks left by earlier tests name message ids this test reuses; and a kick flag or a runner
    hold they left in Redis (a worker killed mid-loop holds its slot until it lapses) would keep
    this test's worker from draining the intake at once."""
    app.extensions["celery"].control.purge()
    with app.app_context():
        queueing.reset()
        client = queueing.redis_client()
        if client is not None:
            for pattern in ("kick:*", "run:*"):
                keys = list(client.scan_iter(queueing._key(client, pattern)))
                if keys:
                    client.delete(*keys)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A Redis of the test's own on a free port, so the test may stop and restart it."""

    def __init__(self, port: int, workdir) -> None:
        self.port, self.workdir, self.process = port, workdir, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
