"""The simulator for tests: a real server on a free loopback port, steered over HTTP.

The handle only speaks HTTP to the server, so a test sees what a worker process pointed at
`base_url` sees, and the same calls work against a simulator started with `graphsim serve`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from flask import Flask, request
from werkzeug.serving import make_server

from devtools.graphsim.server import (
    DEFAULT_APP_ID,
    POLL_SECONDS,
    QuietRequestHandler,
    start_in_thread,
)

API_VERSION = "v25.0"


class SimulatorHandle:
    """Inspect and steer a running simulator; `base_url` is what GRAPH_API_BASE should be."""

    def __init__(self, root_url: str, version: str = API_VERSION):
        self.root_url = root_url.rstrip("/")
        self.base_url = f"{self.root_url}/{version}"
        self._http = httpx.Client(base_url=self.root_url, timeout=10)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def requests(self, endpoint: str | None = None) -> list[dict]:
        """Every request received, oldest first; `endpoint` is `messages` or `profile`."""
        items = self._call("GET", "/_sim/requests")["requests"]
        return [item for item in items if endpoint is None or item["endpoint"] == endpoint]

    def sends(self) -> list[dict]:
        """Send API calls only (messages and sender actions)."""
        return self.requests("messages")

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            items = self.requests()
            if len(items) >= count or time.monotonic() >= deadline:
                return items
            time.sleep(0.05)

    def clear(self) -> None:
        self._call("DELETE", "/_sim/requests")

    def reset(self) -> None:
        """Forget requests, echoes, injected errors, closed windows, profiles and history."""
        self._call("POST", "/_sim/reset")
        self._call("DELETE", "/_sim/history")

    def fail_next(
        self,
        code: int,
        times: int | None = 1,
        recipient_id: str | None = None,
        subcode: int | None = None,
        message: str | None = None,
        status: int | None = None,
        delay_ms: int = 0,
        endpoint: str = "messages",
    ) -> dict:
        """The next `times` calls (None: until cleared) answer with Meta's error `code`."""
        rule = {
            "code": code,
            "times": times,
            "recipient_id": recipient_id,
            "subcode": subcode,
            "message": message,
            "status": status,
            "delay_ms": delay_ms,
            "endpoint": endpoint,
        }
        return self._call("POST", "/_sim/errors", json=rule)["rule"]

    def delay(self, ms: int, times: int | None = 1, recipient_id: str | None = None) -> dict:
        """The next `times` sends are answered (successfully) after `ms` milliseconds."""
        rule = {"delay_ms": ms, "times": times, "recipient_id": recipient_id}
        return self._call("POST", "/_sim/errors", json=rule)["rule"]

    def clear_errors(self) -> None:
        self._call("DELETE", "/_sim/errors")

    def close_window(self, recipient_id: str, closed: bool = True) -> None:
        self._call("POST", "/_sim/window", json={"recipient_id": recipient_id, "closed": closed})

    def set_profile(self, igsid: str, **fields: Any) -> dict:
        return self._call("POST", "/_sim/profiles", json={"id": igsid, **fields})["profile"]

    def set_echo(
        self, url: str, secret: str, enabled: bool = True, app_id: str = DEFAULT_APP_ID
    ) -> None:
        echo = {"url": url, "secret": secret, "enabled": enabled, "app_id": app_id}
        self._call("POST", "/_sim/echo", json=echo)

    def echoes(self) -> list[dict]:
        return self._call("GET", "/_sim/echoes")["echoes"]

    def fetch_attachments(self, enabled: bool = True) -> None:
        """Fetch sent attachments' URLs as Meta does, refusing a send whose fetch fails."""
        self._call("POST", "/_sim/fetch", json={"enabled": enabled})

    def fetches(self) -> list[dict]:
        """Each attachment fetched: url, status, length, content_type, sha256, ok, error."""
        return self._call("GET", "/_sim/fetches")["fetches"]

    def seed_history(
        self,
        account_id: str,
        conversations: list[dict],
        username: str | None = None,
        token: str | None = None,
        page_size: int | None = None,
    ) -> dict:
        """An account's history for the Conversations API (devtools/graphsim/history.py):
        `[{customer: {id, username}, messages: [{from: customer|business, text, created_time}]}]`
        with `created_time` in epoch seconds, ISO-8601, or seconds before now when negative."""
        history = {"account_id": account_id, "conversations": conversations}
        history.update(username=username, token=token, page_size=page_size)
        return self._call("POST", "/_sim/history", json=history)

    def seed_demo_history(self, account_id: str, username: str | None = None) -> dict:
        """Three conversations from the past days, one customer still waiting for an answer."""
        demo = {"account_id": account_id, "username": username}
        return self._call("POST", "/_sim/history/demo", json=demo)

    def fail_history(
        self,
        code: int | None,
        endpoint: str = "history",
        times: int | None = 1,
        delay_ms: int = 0,
        subcode: int | None = None,
    ) -> dict:
        """The next `times` history calls (`conversations`, `conversation`, `history_message`,
        or `history`: any of them) fail with `code` (None: only answer `delay_ms` late)."""
        rule = {"code": code, "endpoint": endpoint, "times": times, "delay_ms": delay_ms}
        rule["subcode"] = subcode
        return self._call("POST", "/_sim/history/errors", json=rule)["rule"]


@contextmanager
def running_simulator(
    echo_to: str | None = None, app_secret: str | None = None, app_id: str = DEFAULT_APP_ID
) -> Iterator[SimulatorHandle]:
    """Start the simulator on a free loopback port for the duration of the block."""
    server = start_in_thread(echo_to=echo_to, app_secret=app_secret, app_id=app_id)
    handle = SimulatorHandle(server.url)
    try:
        yield handle
    finally:
        handle.close()
        server.stop()


@dataclass
class Received:
    """A request a receiver got: the raw bytes are kept, since signatures cover exactly those."""

    path: str
    headers: dict[str, str]
    raw: bytes


@dataclass
class WebhookReceiver:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)


@contextmanager
def running_webhook_receiver() -> Iterator[WebhookReceiver]:
    """A stand-in for the app's webhook endpoint that keeps what it is sent (for echo tests)."""
    app = Flask("graphsim-receiver")
    receiver = WebhookReceiver(url="")

    @app.post("/webhooks/instagram")
    def receive():
        receiver.received.append(Received(request.path, dict(request.headers), request.get_data()))
        return "", receiver.status

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietRequestHandler)
    receiver.url = f"http://127.0.0.1:{server.port}/webhooks/instagram"
    thread = threading.Thread(
        target=server.serve_forever, args=(POLL_SECONDS,), name="graphsim-receiver", daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
