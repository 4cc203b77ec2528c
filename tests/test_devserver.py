"""`make run` (devtools.devserver): the banner comes once the web app answers, the worker and beat
log only warnings, and Ctrl+C stops every child and ends with status 0, so `make` reports no error.

The dev server always runs on the embedded defaults (SQLite and broker in a folder of its own), so
this test is the same whatever database the suite runs on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

pytestmark = pytest.mark.slow  # make run for real: about 100 s

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Direct children of a process, from Linux's /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def _answers(url: str) -> bool:
    try:
        with urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_make_run_prints_its_banner_once_serving_and_ends_cleanly_on_ctrl_c(tmp_path):
    web, sim = _free_port(), _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "GRAPH_API_BASE", "INSTAGRAM_APP_SECRET")
    }
    env |= {
        "HELPDESK_INSTANCE": str(tmp_path / "instance"),
        "HELPDESK_PORT": str(web),
        "GRAPH_SIM_PORT": str(sim),
        "HEARTBEAT_SECONDS": "1",  # a task a second, which the worker logs only at INFO
    }
    lines: list[str] = []
    banner = threading.Event()
    devserver = subprocess.Popen(
        [sys.executable, "-m", "devtools.devserver"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own terminal group, so the group gets Ctrl+C as in a shell
    )

    def read() -> None:
        for line in devserver.stdout:
            lines.append(line)
            if "DM Helpdesk is running at" in line:
                banner.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    children: list[int] = []
    try:
        assert banner.wait(180), "".join(lines)[-3000:]
        assert _answers(f"http://127.0.0.1:{web}/healthz")  # at once: the banner waited for it
        shown = len(lines)
        time.sleep(6)
        output = "".join(lines)
        assert "--from 6190000000000001" in output and "--from 6190000000000002" in output
        assert "Demo logins:\n    agent@demo.test  password: demo-agent-pass\n" in output
        after_banner = "".join(lines[shown:])
        assert "INFO [celery" not in after_banner and "INFO [workers" not in after_banner
        children = _children(devserver.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_text().split("\0") for pid in children]
        celery = [command for command in commands if "celery" in command]
        assert len(celery) == 2  # worker and beat
        assert all("--loglevel=WARNING" in command for command in celery)

        os.killpg(devserver.pid, signal.SIGINT)  # what Ctrl+C in the terminal does
        status = devserver.wait(timeout=60)
    finally:
        if devserver.poll() is None:  # a failed check: stop it all, children first
            children = children or _children(devserver.pid)
            for pid in children:  # each leads a process group of its own
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            os.killpg(devserver.pid, signal.SIGKILL)
            devserver.wait()
    reader.join(timeout=5)

    assert status == 0, "".join(lines)[-3000:]
    assert not [pid for pid in children if _alive(pid)]
    assert not _answers(f"http://127.0.0.1:{web}/healthz")
    assert "Traceback" not in "".join(lines)
