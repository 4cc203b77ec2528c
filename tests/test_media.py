"""Copies of inbound media (issue 18): a worker downloads each image, video, voice note or file
from the platform's URL into the media store, within the limits (https only, no private
addresses, 25 MiB, type checked against the bytes, redirects re-checked), and the console shows
the copy through /media/<id>, else the platform's URL, else a placeholder saying why."""

from __future__ import annotations

import io
import json
import struct
import zlib
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.brands.models import Brand
from helpdesk.dm.edits import unsend_message
from helpdesk.dm.models import Contact, Conversation, Message, RequestState
from helpdesk.extensions import db
from helpdesk.media import copies, fetch
from helpdesk.media.models import MediaObject, MediaStatus
from helpdesk.media.store import media_store
from helpdesk.media.thumbnails import thumbnail
from helpdesk.privacy import erase
from helpdesk.queueing import COPY_MEDIA, SWEEP_MEDIA
from helpdesk.types import utcnow
from tests.conftest import drain_broker, table_counts
from tests.factories import AgentFactory, BrandFactory, member
from tests.helpers import webhooks as hooks
from tests.helpers.console import signed_in
from tests.helpers.media import Route, empty, media_server, png, scan_store
from tests.helpers.webhooks import ACCOUNT
from workers.tasks.media import copy_media, sweep_media_copies

PERSON = "6120000000000071"
PHOTO = png(comment="ZQMEDIA8181")


@pytest.fixture(autouse=True)
def _empty_store():
    empty(media_store())


@pytest.fixture
def private_allowed(app, monkeypatch):
    monkeypatch.setitem(app.config, "MEDIA_FETCH_ALLOW_PRIVATE", True)


@pytest.fixture
def server(private_allowed):
    routes = {
        "/photo.png": Route(200, PHOTO, {"Content-Type": "image/png"}),
        "/gone.png": Route(410, b"URL signature expired"),
        "/forbidden.png": Route(403, b"URL signature expired"),
        "/page.png": Route(
            200, b"<html><script>alert(1)</script></html>", {"Content-Type": "image/png"}
        ),
        "/big.png": Route(200, PHOTO, {"Content-Type": "image/png"}),
        "/to-photo": Route(302, b"", {"Location": "/photo.png"}),
        "/to-metadata": Route(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
        "/to-loop": Route(302, b"", {"Location": "/to-loop"}),
        "/busy.png": Route(503, b"try later"),
        "/manual.pdf": Route(200, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", {}),
    }
    with media_server(routes) as running:
        yield running


class Desk:
    """A connected channel, an agent and an admin of its brand."""

    def __init__(self) -> None:
        channel = hooks.connect_example_channel()
        self.brand = db.session.get(Brand, channel.brand_id)
        self.agent, self.admin = AgentFactory(), AgentFactory()
        member(self.agent, self.brand, Role.AGENT)
        member(self.admin, self.brand, Role.ADMIN)
        db.session.commit()
        self.sent = 0

    def receive(self, *attachments: tuple[str, str], sender: str = PERSON) -> Message:
        """A customer's message carrying (kind, url) attachments, through the signed webhook."""
        self.sent += 1
        event = {
            "sender": {"id": sender},
            "recipient": {"id": ACCOUNT},
            "timestamp": 1763800000000 + self.sent,
            "message": {
                "mid": f"media-{self.sent}",
                "attachments": [{"type": k, "payload": {"url": u}} for k, u in attachments],
            },
        }
        raw = json.dumps(
            {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": [event]}]}
        ).encode()
        from flask import current_app

        assert hooks.post(current_app.test_client(), raw).status_code == 200
        hooks.process_all()
        return db.session.scalar(select(Message).where(Message.mid == f"media-{self.sent}"))


@pytest.fixture
def desk() -> Desk:
    return Desk()


def media_of(message: Message) -> list[MediaObject]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(MediaObject)
            .where(MediaObject.message_id == message.id)
            .order_by(MediaObject.attachment_index)
        )
    )


def page_of(client, message: Message) -> str:
    db.session.rollback()
    response = client.get(f"/conversations/{message.conversation_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


# The copy and how it is shown -------------------------------------------------------------------


def test_an_image_from_a_local_server_is_copied_and_shown_from_the_store(app, client, desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    [media] = media_of(message)
    assert (media.status, media.kind, media.attempts) == (MediaStatus.PENDING, "image", 0)
    assert media.source_url == server.url("/photo.png")
    db.session.commit()

    assert copy_media(media.id) == "stored"

    [media] = media_of(message)
    assert media.status is MediaStatus.STORED and media.reason is None
    assert (media.content_type, media.size) == ("image/png", len(PHOTO))
    assert media.storage_key.startswith(f"{desk.brand.id}/") and media.thumbnail_key
    assert media_store().get(media.storage_key) == PHOTO
    signed_in(client, desk.agent)
    page = page_of(client, message)
    assert f'href="/media/{media.id}"' in page and f'src="/media/{media.id}/thumbnail"' in page
    assert server.url("/photo.png") not in page, "the platform's URL is not used once copied"

    full = client.get(f"/media/{media.id}")
    assert full.status_code == 200 and full.data == PHOTO
    assert full.mimetype == "image/png"
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    assert full.headers["Content-Disposition"].startswith("inline")
    assert (
        "private" in full.headers["Cache-Control"] and "public" not in full.headers["Cache-Control"]
    )
    small = client.get(f"/media/{media.id}/thumbnail")
    assert small.status_code == 200 and small.mimetype == "image/webp"
    assert max(Image.open(io.BytesIO(small.data)).size) <= 480


def test_the_inbox_row_shows_the_latest_pictures_thumbnail(client, desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    [media] = media_of(message)
    db.session.commit()
    signed_in(client, desk.agent)
    before = client.get("/inbox?folder=requests").get_data(as_text=True)
    assert "row-thumb" not in before  # nothing stored yet: the preview says [image]

    copy_media(media.id)
    db.session.rollback()
    page = client.get("/inbox?folder=requests").get_data(as_text=True)
    assert f'class="row-thumb" src="/media/{media.id}/thumbnail"' in page


def test_a_copy_is_asked_of_a_worker_after_the_commit_and_noted_once(app, desk, server):
    drain_broker(app)
    message = desk.receive(("image", server.url("/photo.png")), ("video", server.url("/v.mp4")))
    sent = [(name, args) for name, args in drain_broker(app) if name == COPY_MEDIA]
    rows = media_of(message)
    assert sorted(args[0] for _name, args in sent) == sorted(m.id for m in rows)
    assert [m.attachment_index for m in rows] == [0, 1]
    assert copies.note_inbound(message) == []  # noted again: nothing new
    db.session.commit()
    assert len(media_of(message)) == 2


def test_kinds_without_media_and_links_that_are_not_web_links_get_no_copy(desk, server):
    message = desk.receive(("share", server.url("/photo.png")), ("image", "ftp://x.example/a.png"))
    assert media_of(message) == []


def test_a_redirect_is_followed_and_the_file_kind_takes_any_type(desk, server):
    photo = desk.receive(("image", server.url("/to-photo")))
    manual = desk.receive(("file", server.url("/manual.pdf")))
    db.session.commit()
    for message in (photo, manual):
        [media] = media_of(message)
        assert copies.copy(media.id) is MediaStatus.STORED
    assert media_of(photo)[0].content_type == "image/png"
    [pdf] = media_of(manual)
    assert pdf.content_type == "application/pdf" and pdf.thumbnail_key is None


@pytest.mark.parametrize(
    ("path", "kind", "why"),
    [
        ("/gone.png", "image", "the link expired"),
        ("/forbidden.png", "image", "the link expired"),
        ("/big.png", "image", "larger than"),
        ("/page.png", "image", "not an image"),
        ("/photo.png", "audio", "not a sound"),
        ("/to-metadata", "image", "link-local"),
        ("/to-loop", "image", "redirected more than 5 times"),
    ],
)
def test_a_medium_that_cannot_be_copied_records_why_and_shows_a_placeholder(
    app, client, monkeypatch, desk, server, path, kind, why
):
    if path == "/big.png":
        monkeypatch.setitem(app.config, "MEDIA_MAX_BYTES", len(PHOTO) - 1)
    message = desk.receive((kind, server.url(path)))
    [media] = media_of(message)
    db.session.commit()
    keys = set(media_store().keys())

    assert copy_media(media.id) == "failed"

    [media] = media_of(message)
    assert media.status is MediaStatus.FAILED and why in media.reason.lower()
    assert media.storage_key is None and set(media_store().keys()) == keys
    signed_in(client, desk.agent)
    page = page_of(client, message)
    assert "no longer available" in page and why in page.lower()
    assert server.url(path) not in page, "a failed copy never falls back to the platform's URL"
    assert client.get(f"/media/{media.id}").status_code == 404
    assert copy_media(media.id) is None, "given up: not tried again"


def test_without_the_setting_plain_http_and_private_addresses_are_refused_unasked(
    app, desk, server, monkeypatch, dns
):
    monkeypatch.setitem(app.config, "MEDIA_FETCH_ALLOW_PRIVATE", False)
    dns["cdn.example.test"] = ["10.1.2.3"]
    dns["mapped.example.test"] = ["::ffff:127.0.0.1"]
    message = desk.receive(
        ("image", server.url("/photo.png")),
        ("image", "https://127.0.0.1/photo.png"),
        ("image", "https://cdn.example.test/photo.png"),
        ("image", "https://mapped.example.test/photo.png"),
        ("image", "https://localhost/photo.png"),
    )
    db.session.commit()
    for media in media_of(message):
        assert copies.copy(media.id) is MediaStatus.FAILED
    reasons = [m.reason for m in media_of(message)]
    assert "not https" in reasons[0]
    assert all("private address" in reason for reason in reasons[1:]), reasons
    assert server.asked == [], "nothing was asked of any of them"


def test_link_local_and_reserved_addresses_are_refused_even_with_the_setting(private_allowed):
    for address in ("169.254.169.254", "0.0.0.0", "224.0.0.1", "fe80::1", "240.0.0.1"):
        with pytest.raises(fetch.Refused):
            fetch.check(f"http://{address.join('[]') if ':' in address else address}/x", True)
    assert fetch.check("http://127.0.0.1:1/x", True)[1] == ["127.0.0.1"]


def test_a_server_error_is_retried_later_and_given_up_after_a_few_tries(desk, server):
    message = desk.receive(("image", server.url("/busy.png")))
    [media] = media_of(message)
    db.session.commit()
    now = utcnow()
    assert copies.copy(media.id, now) is MediaStatus.PENDING
    [media] = media_of(message)
    assert media.attempts == 1 and media.next_attempt_at > now and "503" in media.reason
    assert copies.copy(media.id, now) is None, "not due yet"
    for _ in range(copies.MAX_ATTEMPTS - 1):
        now += timedelta(hours=7)
        copies.copy(media.id, now)
    [media] = media_of(message)
    assert media.status is MediaStatus.FAILED and media.attempts == copies.MAX_ATTEMPTS
    assert "not copied after 5 tries" in media.reason.lower()
    assert len(server.asked) == copies.MAX_ATTEMPTS


def test_a_link_past_its_expiry_time_is_not_fetched(desk, server):
    past = format(int((utcnow() - timedelta(minutes=1)).timestamp()), "x")
    message = desk.receive(("image", server.url(f"/photo.png?oe={past}")))
    [media] = media_of(message)
    db.session.commit()
    assert copies.copy(media.id) is MediaStatus.FAILED
    assert "expired" in media_of(message)[0].reason and server.asked == []


def test_the_sweep_copies_what_the_broker_lost(app, desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    db.session.commit()
    assert sweep_media_copies() >= 1
    assert media_of(message)[0].status is MediaStatus.STORED
    schedule = app.extensions["celery"].conf.beat_schedule
    assert any(entry["task"] == SWEEP_MEDIA for entry in schedule.values())


def test_a_decompression_bomb_gets_no_thumbnail():
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    assert thumbnail(bomb) is None
    assert thumbnail(b"not an image at all") is None
    assert thumbnail(png(2000, 1000)) is not None


# Who may see it -----------------------------------------------------------------------------------


def test_only_agents_of_the_brand_who_may_read_the_message_get_the_copy(app, client, desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    [media] = media_of(message)
    db.session.commit()
    copies.copy(media.id)
    db.session.rollback()

    assert client.get(f"/media/{media.id}").status_code == 302  # strangers sign in first
    # Another brand's admin (no channel: a factory channel's account id could be ACCOUNT's).
    stranger = AgentFactory()
    member(stranger, BrandFactory(), Role.ADMIN)
    db.session.commit()
    outsider = app.test_client()
    signed_in(outsider, stranger)
    before = table_counts()
    assert outsider.get(f"/media/{media.id}").status_code == 404
    assert outsider.get(f"/media/{media.id}/thumbnail").status_code == 404
    assert table_counts() == before

    conversation = db.session.get(Conversation, message.conversation_id)
    conversation.request_state = RequestState.HIDDEN  # spam: for admins only
    db.session.commit()
    signed_in(client, desk.agent)
    assert client.get(f"/media/{media.id}").status_code == 404
    admin = app.test_client()
    signed_in(admin, desk.admin)
    assert admin.get(f"/media/{media.id}").status_code == 200
    assert client.get("/media/999999").status_code == 404


# Erase and vanish ---------------------------------------------------------------------------------


def test_erasing_the_person_deletes_the_copies_and_forgets_their_urls(desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    [media] = media_of(message)
    db.session.commit()
    copies.copy(media.id)
    [media] = media_of(message)
    keys = [media.storage_key, media.thumbnail_key]
    assert scan_store(media_store(), ["ZQMEDIA8181"]) != []

    contact = db.session.scalar(select(Contact).where(Contact.platform_id == PERSON))
    erasure = erase.erase_contact(contact)
    db.session.commit()

    assert erasure.media_files == 1
    [media] = media_of(message)
    assert media.status is MediaStatus.PURGED
    assert (media.source_url, media.storage_key, media.thumbnail_key) == (None, None, None)
    assert scan_store(media_store(), ["ZQMEDIA8181"], keys) == []


def test_an_unsent_message_takes_its_copy_with_it(desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    [media] = media_of(message)
    db.session.commit()
    copies.copy(media.id)
    [media] = media_of(message)
    keys = [media.storage_key, media.thumbnail_key]

    unsend_message(db.session.get(Message, message.id))
    db.session.commit()

    [media] = media_of(message)
    assert media.status is MediaStatus.PURGED and media.source_url is None
    assert scan_store(media_store(), ["ZQMEDIA8181"], keys) == []


def test_a_copy_that_finishes_after_the_erase_keeps_nothing(desk, server):
    message = desk.receive(("image", server.url("/photo.png")))
    [media] = media_of(message)
    db.session.commit()
    claimed = copies._claim(media.id, utcnow())
    contact = db.session.scalar(select(Contact).where(Contact.platform_id == PERSON))
    erase.erase_contact(contact)
    db.session.commit()
    keys = set(media_store().keys())

    fetched = fetch.Fetched(PHOTO, "image/png")
    assert copies._keep(claimed, claimed.attempts, fetched) is None

    assert set(media_store().keys()) == keys
    assert media_of(message)[0].status is MediaStatus.PURGED


def test_the_export_links_each_copy_or_says_why_there_is_none(desk, server):
    from helpdesk.accounts.actor import Actor
    from helpdesk.contacts import export

    message = desk.receive(("image", server.url("/photo.png")), ("image", server.url("/gone.png")))
    db.session.commit()
    for media in media_of(message):
        copies.copy(media.id)
    stored, failed = media_of(message)
    contact = db.session.scalar(select(Contact).where(Contact.platform_id == PERSON))

    document = export.export(contact, Actor.for_agent(desk.admin, desk.brand.id, Role.ADMIN))

    [shown] = [m for m in document["messages"] if m["id"] == message.id]
    assert [(c["attachment_index"], c["status"], c["link"]) for c in shown["media_copies"]] == [
        (0, "stored", f"/media/{stored.id}"),
        (1, "failed", None),
    ]
    assert shown["media_copies"][0]["sha256"] == stored.sha256
    assert "expired" in shown["media_copies"][1]["reason"]
