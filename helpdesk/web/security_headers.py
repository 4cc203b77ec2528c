"""Security headers on every response: what the browser may load, frame and send along.

The Content-Security-Policy allows scripts from this site's own files only (no inline script, no
inline event handler, no `javascript:` URL), so text a customer wrote can never run even if an
escaping mistake let it into a page. Styles may be inline (templates set CSS variables in
`style` attributes); images and media may come from https, since customers' media live on
Instagram's CDN.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' https: data:",
        "media-src 'self' https:",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    """A view that sets one of these itself keeps its own. Most responses set none, which one
    pass over the response's headers tells (four setdefault calls would scan them four times)."""
    headers = response.headers
    given = {name.lower() for name in headers.keys()}
    for name, value in HEADERS.items():
        if name.lower() not in given:
            headers.add(name, value)
    return response


def init_security_headers(app: Flask) -> None:
    app.after_request(add_security_headers)
