"""`make run`: migrate, seed the demo brand once, then run web, worker, beat and the Graph API
simulator together until Ctrl+C.

HELPDESK_HOST and HELPDESK_PORT choose where the web app listens, GRAPH_SIM_PORT the simulator's
port, DEMO_LOG_LEVEL how much the worker and beat log (WARNING: a quiet terminal). The children run
in process groups of their own, so the terminal's Ctrl+C reaches only this process: it stops them
with SIGTERM, waits for them, and exits 0, so `make` ends without an error and no child prints a
traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.error import URLError
from urllib.request import urlopen

import httpx

from devtools.graphsim.oauth import DEFAULT_ACCOUNTS
from devtools.seed.demo import NEW_CUSTOMER_IDS, NEW_CUSTOMERS

HOST = os.environ.get("HELPDESK_HOST", "127.0.0.1")
PORT = int(os.environ.get("HELPDESK_PORT", "5000"))
SIM_PORT = int(os.environ.get("GRAPH_SIM_PORT", "8081"))
LOG_LEVEL = os.environ.get("DEMO_LOG_LEVEL", "WARNING").upper()
DEMO_SECRET = "demo-app-secret"
READY_SECONDS = 120.0
STOP_SECONDS = 20.0


class _Stop(Exception):
    """SIGTERM or SIGHUP: end like Ctrl+C does."""


def _raise_stop(*_args: object) -> None:
    raise _Stop


def _flask(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        process_group=0,
    )
    return result.stdout or ""


def _demo_environment() -> None:
    """The demo talks to the local Graph API simulator, never to Meta, unless told otherwise."""
    os.environ.setdefault("INSTAGRAM_APP_SECRET", DEMO_SECRET)
    os.environ.setdefault("INSTAGRAM_VERIFY_TOKEN", "demo-verify-token")
    os.environ.setdefault("GRAPH_API_BASE", f"http://127.0.0.1:{SIM_PORT}/v25.0")
    # Instagram Login through the simulator's authorize page and token endpoints.
    os.environ.setdefault("INSTAGRAM_APP_ID", "555000111222333")
    os.environ.setdefault("INSTAGRAM_AUTH_BASE", f"http://127.0.0.1:{SIM_PORT}")
    os.environ.setdefault("INSTAGRAM_TOKEN_BASE", f"http://127.0.0.1:{SIM_PORT}")
    os.environ.setdefault("PUBLIC_BASE_URL", f"http://{HOST}:{PORT}")


def _commands(simulated: bool) -> dict[str, list[str]]:
    celery = [sys.executable, "-m", "celery", "-A", "workers", "--quiet"]
    commands = {}
    if simulated:
        commands["graph-sim"] = [
            sys.executable, "-m", "devtools.graphsim", "serve", "--port", str(SIM_PORT),
            "--echo-to", f"http://{HOST}:{PORT}/webhooks/instagram",
            "--app-secret", os.environ["INSTAGRAM_APP_SECRET"],
        ]  # fmt: skip
    commands["web"] = [
        sys.executable, "-m", "flask", "--app", "wsgi", "run", "--host", HOST, "--port", str(PORT),
    ]  # fmt: skip
    commands["worker"] = [*celery, "worker", f"--loglevel={LOG_LEVEL}", "--concurrency=2"]
    commands["beat"] = [*celery, "beat", f"--loglevel={LOG_LEVEL}"]
    return commands


def _answers(url: str) -> bool:
    try:
        with urlopen(url, timeout=2) as response:
            return response.status == 200
    except (URLError, OSError):
        return False


def _wait_until_answering(urls: list[str], processes: dict[str, subprocess.Popen]) -> bool:
    """Poll until every URL answers 200, so the banner never sends anyone to a dead port."""
    deadline = time.monotonic() + READY_SECONDS
    waiting = list(urls)
    while waiting and time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes.values()):
            return False
        waiting = [url for url in waiting if not _answers(url)]
        if waiting:
            time.sleep(0.25)
    return not waiting


def introduce_new_customers(sim_url: str) -> None:
    """Give the simulator the profiles of the README's customers: people the brand follows."""
    for customer in NEW_CUSTOMERS:
        httpx.post(
            f"{sim_url.rstrip('/')}/_sim/profiles",
            json={**customer, "is_business_follow_user": True, "is_user_follow_business": True},
            timeout=5,
        ).raise_for_status()


def seed_login_history(sim_url: str) -> None:
    """Give each account of the simulator's authorize page a recent history, so an admin who
    connects one (the demo brand holds neither) sees its conversations read into the inbox.
    Both are seeded: with one account alone the simulator would serve its history to either."""
    for account in DEFAULT_ACCOUNTS:
        httpx.post(
            f"{sim_url.rstrip('/')}/_sim/history/demo",
            json={"account_id": account["user_id"], "username": account["username"]},
            timeout=5,
        ).raise_for_status()


def _send_dm_command(customer: str, text: str) -> str:
    return (
        f"    .venv/bin/flask --app wsgi graph-sim send-dm --app http://{HOST}:{PORT} "
        f"--secret {os.environ['INSTAGRAM_APP_SECRET']} --from {customer} --text {text}\n"
    )


def banner(logins: str, simulated: bool) -> str:
    """What `make run` prints once the web app answers: where to go, how to sign in and write."""
    logins = "".join(f"    {line.strip()}\n" for line in logins.splitlines() if "password:" in line)
    lines = (
        f"\n  DM Helpdesk is running at http://{HOST}:{PORT}/\n"
        f"  Demo logins:\n{logins}"
        "  Worker and beat are running (the home page shows the last heartbeat).\n"
    )
    if simulated:
        lines += (
            f"  Graph API simulator on port {SIM_PORT}; write to the demo brand as a customer:\n"
            + _send_dm_command(NEW_CUSTOMER_IDS[0], '"Where is my order?"')
            + "  and as a second customer (another --from):\n"
            + _send_dm_command(NEW_CUSTOMER_IDS[1], '"Can I get my money back for the boots?"')
            + "  As the admin, connect a second account: Settings > Channels > Connect an\n"
            + f"  Instagram account, choose @{DEFAULT_ACCOUNTS[1]['username']}, Allow; its recent "
            "conversations come into the inbox.\n"
        )
    return lines + "  Press Ctrl-C to stop.\n"


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to every child still running, then wait; a second Ctrl+C kills the stragglers."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    try:
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    except (KeyboardInterrupt, _Stop):
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def main() -> int:
    """0 when stopped by Ctrl+C or SIGTERM; 1 when a child ended on its own."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGHUP, _raise_stop)
    _demo_environment()
    simulated = os.environ["GRAPH_API_BASE"].startswith(f"http://127.0.0.1:{SIM_PORT}/")
    processes: dict[str, subprocess.Popen] = {}
    try:
        _flask("db", "upgrade")
        logins = _flask("seed-demo", capture=True)
        for name, command in _commands(simulated).items():
            processes[name] = subprocess.Popen(command, process_group=0)
        urls = [f"http://{HOST}:{PORT}/healthz"]
        if simulated:
            urls.append(f"http://127.0.0.1:{SIM_PORT}/_sim/health")
        if _wait_until_answering(urls, processes):
            if simulated:
                introduce_new_customers(f"http://127.0.0.1:{SIM_PORT}")
                seed_login_history(f"http://127.0.0.1:{SIM_PORT}")
            print(banner(logins, simulated), flush=True)
        elif all(process.poll() is None for process in processes.values()):
            print(f"  The demo is not answering at {urls} yet.", file=sys.stderr, flush=True)
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        print("\n  Stopping the demo...", file=sys.stderr, flush=True)
        _stop(processes)
        return 0
    except BaseException:
        _stop(processes)
        raise
    ended = [name for name, process in processes.items() if process.poll() is not None]
    _stop(processes)
    print(f"stopped: {', '.join(ended)} exited", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
