"""A local web server standing in for the platform's media CDN, pictures to serve, and a scan of
the media store for what must not be left in it."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, PngImagePlugin

from helpdesk.media import copies, fetch
from helpdesk.media.models import MediaObject
from helpdesk.media.store import MediaStore
from helpdesk.types import utcnow


def png(width: int = 800, height: int = 600, comment: str | None = None) -> bytes:
    """A real PNG; `comment` is written into its text chunk, so its bytes carry that string."""
    info = PngImagePlugin.PngInfo()
    if comment:
        info.add_text("Comment", comment)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MediaServer:
    base: str
    routes: dict[str, Route | Callable[[], Route]]
    asked: list[str]

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def media_server(routes: dict[str, Route | Callable[[], Route]]) -> Iterator[MediaServer]:
    """Serve `routes` (path -> answer, or a function giving one per request) on a free loopback
    port; every path asked is recorded."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            answer = routes.get(self.path.split("?")[0], Route(404, b"not found"))
            route = answer() if callable(answer) else answer
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield MediaServer(f"http://127.0.0.1:{server.server_address[1]}", routes, asked)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def scan_store(store: MediaStore, strings: Iterable[str], keys: Iterable[str] = ()) -> list[str]:
    """What the store still holds of the given strings (in its keys or bytes) and which of the
    given keys are still there."""
    wanted = [s.encode() for s in strings]
    found = []
    present = set(store.keys())
    found.extend(f"key kept: {key}" for key in keys if key in present)
    for key in sorted(present):
        data = store.get(key)
        found.extend(f"{key}: {s.decode()}" for s in wanted if s in key.encode() or s in data)
    return found


def empty(store: MediaStore) -> None:
    """The store is the run's, not the test's: a test that scans it starts from nothing."""
    for key in store.keys():
        store.delete(key)


def store_copies(comment: str) -> list[str]:
    """Record every pending copy as the worker does once it has downloaded the bytes: here a PNG
    carrying `comment`, since the platform URLs these tests plant are served nowhere. Returns
    the keys stored (originals and thumbnails)."""
    keys: list[str] = []
    for media_id in copies.due_ids():
        media = copies._claim(media_id, utcnow())
        assert media is not None
        copies._keep(media, media.attempts, fetch.Fetched(png(comment=comment), "image/png"))
        stored = copies.db.session.get(MediaObject, media_id)
        keys.extend(key for key in (stored.storage_key, stored.thumbnail_key) if key)
    return keys
