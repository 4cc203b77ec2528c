"""`make run`: migrate, seed the demo brand once, then run web, worker and beat together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

HOST = os.environ.get("HELPDESK_HOST", "127.0.0.1")
PORT = int(os.environ.get("HELPDESK_PORT", "5000"))
SIM_PORT = int(os.environ.get("GRAPH_SIM_PORT", "8081"))
DEMO_SECRET = "demo-app-secret"


def _flask(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def _demo_environment() -> None:
    """The demo talks to the local Graph API simulator, never to Meta, unless told otherwise."""
    os.environ.setdefault("INSTAGRAM_APP_SECRET", DEMO_SECRET)
    os.environ.setdefault("INSTAGRAM_VERIFY_TOKEN", "demo-verify-token")
    os.environ.setdefault("GRAPH_API_BASE", f"http://127.0.0.1:{SIM_PORT}/v25.0")


def main() -> int:
    _demo_environment()
    _flask("db", "upgrade")
    logins = _flask("seed-demo", capture=True)
    celery = [sys.executable, "-m", "celery", "-A", "workers"]
    simulated = os.environ["GRAPH_API_BASE"].startswith(f"http://127.0.0.1:{SIM_PORT}/")
    processes = {}
    if simulated:
        processes["graph-sim"] = subprocess.Popen(
            [sys.executable, "-m", "helpdesk.graphsim", "serve", "--port", str(SIM_PORT),
             "--echo-to", f"http://{HOST}:{PORT}/webhooks/instagram",
             "--app-secret", os.environ["INSTAGRAM_APP_SECRET"]]
        )  # fmt: skip
    processes |= {
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
        + (
            f"  Graph API simulator on port {SIM_PORT}; write to the demo brand as a customer:\n"
            f"    .venv/bin/flask --app wsgi graph-sim send-dm --app http://{HOST}:{PORT} "
            f"--secret {os.environ['INSTAGRAM_APP_SECRET']} --from 6120000000000001 "
            '--text "Where is my order?"\n'
            if simulated
            else ""
        )
        +
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
