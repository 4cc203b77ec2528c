"""`make run`: migrate, seed the demo brand once, then run web, worker and beat together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HOST = os.environ.get("HELPDESK_HOST", "127.0.0.1")
PORT = int(os.environ.get("HELPDESK_PORT", "5000"))


def _flask(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def main() -> int:
    _flask("db", "upgrade")
    logins = _flask("seed-demo", capture=True)
    celery = [sys.executable, "-m", "celery", "-A", "workers"]
    processes = {
        "web": subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "wsgi",
                "run",
                "--host",
                HOST,
                "--port",
                str(PORT),
            ]
        ),
        "worker": subprocess.Popen([*celery, "worker", "--loglevel=INFO", "--concurrency=2"]),
        "beat": subprocess.Popen([*celery, "beat", "--loglevel=INFO"]),
    }
    time.sleep(2)
    print(
        f"\n  DM Helpdesk is running at http://{HOST}:{PORT}/\n"
        f"  Demo logins:\n{logins}"
        "  Worker and beat are running: a heartbeat task logs every 30 s.\n"
        "  Press Ctrl-C to stop.\n",
        flush=True,
    )

    def stop(*_args) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    stopped = [name for name, p in processes.items() if p.poll() is not None]
    stop()
    if stopped:
        print(f"stopped: {', '.join(stopped)} exited", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
