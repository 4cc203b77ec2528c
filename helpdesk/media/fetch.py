"""Downloading a medium from the platform's URL without letting the URL reach inside the network.

The URL comes from a webhook, so whoever can write to the brand chooses it. Every hop (the URL and
each redirect, at most MAX_REDIRECTS) is checked before any connection: https only, a host whose
every address is on the internet, and the request goes to an address that was checked, so a DNS
answer that changes between the check and the call cannot point it elsewhere. The body is read
with a hard cap, and its type is judged from its bytes, never from what the server claims.

MEDIA_FETCH_ALLOW_PRIVATE (tests and the demo) also allows http and loopback or private
addresses; link-local (cloud metadata services), multicast, unspecified and reserved addresses
stay refused even then: no test or demo needs them, and an attacker would want them first.

`Refused` is final (asking again would get the same answer); `Unavailable` may pass (a timeout,
the platform's server error) and is worth another try later.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import filetype
import httpx

from helpdesk.outgoing.service import Address, is_internal

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEADLINE_SECONDS = 60.0  # a whole download, however slowly the bytes drip
EXPIRED = (401, 403, 404, 410)  # what the CDN answers once its signed URL is past its time
TEMPORARY = (408, 425, 429)
USER_AGENT = "dm-helpdesk-media/1"

# What each kind of attachment may turn out to be, by its bytes; "file" takes anything.
IMAGES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/heic", "image/bmp"}
)
VIDEOS = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/3gpp", "video/x-m4v"})
# Voice notes come in containers that also hold video (mp4, webm).
SOUNDS = frozenset(
    {
        "audio/aac",
        "audio/mpeg",
        "audio/mp4",
        "audio/ogg",
        "audio/x-wav",
        "audio/amr",
        "audio/x-flac",
        "video/mp4",
        "video/webm",
        "video/3gpp",
    }
)
EXPECTED: dict[str, frozenset[str] | None] = {
    "image": IMAGES,
    "gif": IMAGES,
    "sticker": IMAGES,
    "video": VIDEOS,
    "audio": SOUNDS,
    "story_mention": IMAGES | VIDEOS,
    "story": IMAGES | VIDEOS,
    "ig_story": IMAGES | VIDEOS,
    "file": None,
}
NAMES = {"image": "an image", "video": "a video", "audio": "a sound", "gif": "an image"}


class Refused(Exception):
    """The medium cannot be copied, and asking again would not change that; the message is the
    reason an agent reads under the placeholder."""


class Unavailable(Exception):
    """The download failed in a way that may pass: worth another try while the URL lives."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str


def fetch(url: str, kind: str, *, max_bytes: int, allow_private: bool = False) -> Fetched:
    """The medium's bytes and their sniffed type; raises Refused or Unavailable."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            target, addresses = check(url, allow_private)
            response = _open(client, target, addresses)
            try:
                if response.status_code in REDIRECTS and response.headers.get("location"):
                    url = urljoin(str(target), response.headers["location"])
                    continue
                _check_status(response.status_code)
                data = _read(response, max_bytes, deadline)
            finally:
                response.close()
            return Fetched(data, sniff(data, kind))
    raise Refused(f"The platform redirected more than {MAX_REDIRECTS} times.")


# Checking a hop ---------------------------------------------------------------------------------


def check(url: str, allow_private: bool) -> tuple[httpx.URL, list[str]]:
    """The parsed URL and the addresses it may be fetched from; raises Refused otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise Refused("The link is not a valid URL.") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in schemes:
        raise Refused("The link is not https, so it was not downloaded.")
    host = parsed.host.rstrip(".").lower()
    if not host:
        raise Refused("The link has no host.")
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise Refused("The link points inside the network (a private address), which is refused.")
    addresses = _resolve(parsed)
    for address in addresses:
        refusal = refusal_of(ipaddress.ip_address(address), allow_private)
        if refusal:
            raise Refused(refusal)
    return parsed, addresses


def refusal_of(address: Address, allow_private: bool) -> str | None:
    """Why an address may not be fetched from, or None."""
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    plain = mapped or address  # ::ffff:a.b.c.d is a.b.c.d (and all of ::/8 counts as reserved)
    if plain.is_link_local or plain.is_multicast or plain.is_unspecified or plain.is_reserved:
        return "The link points at a reserved or link-local address, which is refused."
    if not allow_private and is_internal(address):
        return "The link points inside the network (a private address), which is refused."
    return None


def _resolve(parsed: httpx.URL) -> list[str]:
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.raw_host.decode("ascii"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unavailable(f"The media host {parsed.host} could not be resolved.") from exc
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise Unavailable(f"The media host {parsed.host} could not be resolved.")
    return addresses


# Talking to the server --------------------------------------------------------------------------


def _open(client: httpx.Client, target: httpx.URL, addresses: list[str]) -> httpx.Response:
    """GET from the first checked address that answers; the certificate is still checked
    against the URL's host (SNI), whichever address is connected to."""
    headers = {"Host": target.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept": "*/*"}
    extensions = {"sni_hostname": target.raw_host.decode("ascii")}
    error: Exception | None = None
    for address in addresses:
        request = client.build_request(
            "GET", target.copy_with(host=address), headers=headers, extensions=extensions
        )
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            error = exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"The download failed ({type(exc).__name__}).") from exc
    raise Unavailable(f"The media server could not be reached ({type(error).__name__}).")


def _check_status(status: int) -> None:
    if 200 <= status < 300:
        return
    if status in EXPIRED:
        raise Refused(f"The link expired (the platform answered {status}).")
    if status in TEMPORARY or status >= 500:
        raise Unavailable(f"The platform answered {status}.")
    raise Refused(f"The platform refused the download ({status}).")


def _read(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    too_big = Refused(f"The file is larger than {max_bytes // (1024 * 1024)} MiB, the limit.")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise too_big
            if time.monotonic() > deadline:
                raise Unavailable("The download took too long.")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise Unavailable(f"The download was cut off ({type(exc).__name__}).") from exc
    if not size:
        raise Refused("The platform sent an empty file.")
    return b"".join(chunks)


# What the bytes are -----------------------------------------------------------------------------


def sniff(data: bytes, kind: str) -> str:
    """The type the bytes show, checked against the kind of attachment; raises Refused."""
    guess = filetype.guess(data[:8192])
    mime = guess.mime if guess is not None else None
    expected = EXPECTED.get(kind)
    if expected is None:
        return mime or "application/octet-stream"
    if mime not in expected:
        shown = mime or "unrecognised data"
        raise Refused(
            f"The file is not {NAMES.get(kind, 'an image or a video')} (its content is {shown})."
        )
    return mime
