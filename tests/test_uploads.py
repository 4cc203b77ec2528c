"""Agents send files (issue 18): POST /api/v1/uploads and the reply box's upload, Meta's limits
per type read from the bytes, a reply naming `{type, upload_id}`, and the signed `/m/<token>`
link the Send API fetches, which the simulator fetches as Meta would."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator

import itsdangerous
import pytest
from PIL import Image
from sqlalchemy import select

from helpdesk.accounts.models import Role
from helpdesk.accounts.tokens import create_token
from helpdesk.delivery import service as delivery
from helpdesk.dm.models import Direction, Message, MessageStatus
from helpdesk.extensions import db
from helpdesk.media import uploads
from helpdesk.media.models import MediaObject, MediaOrigin, MediaStatus
from helpdesk.media.store import media_store
from tests.conftest import serving, table_counts
from tests.helpers.console import csrf_token, signed_in
from tests.helpers.world import World

API = "/api/v1"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64


def png(size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, "PNG")
    return out.getvalue()


def padded_png(total: int) -> bytes:
    """A PNG's signature followed by `total` bytes in all: sniffed as png, sized as asked."""
    head = png()
    return head + b"\x00" * (total - len(head))


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def bearer(world: World) -> dict[str, str]:
    _row, secret = create_token(world.brand, "uploads", Role.AGENT)
    db.session.commit()
    return {"Authorization": f"Bearer {secret}"}


def upload(client, headers, data: bytes, name: str = "photo.png", **form):
    files = {"file": (io.BytesIO(data), name, form.pop("content_type", "image/png"))}
    return client.post(f"{API}/uploads", data={**files, **form}, headers=headers)


def stored_keys() -> list[str]:
    return media_store().keys()


# Uploading --------------------------------------------------------------------------------------


def test_an_upload_answers_its_id_type_and_signed_link(app, client, world, bearer, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://desk.example.com")
    data = png()
    response = upload(client, bearer, data)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["type"] == "image" and body["content_type"] == "image/png"
    assert body["url"].startswith("https://desk.example.com/m/")
    media = db.session.get(MediaObject, body["id"])
    assert media.brand_id == world.brand.id and media.origin is MediaOrigin.UPLOAD
    assert media.status is MediaStatus.STORED and media.size == len(data)
    assert media.storage_key.startswith(f"{world.brand.id}/up/")
    assert media_store().get(media.storage_key) == data
    assert media.sha256 == hashlib.sha256(data).hexdigest()


def test_the_type_is_read_from_the_bytes_never_the_name_or_content_type(client, bearer):
    response = upload(client, bearer, PDF, name="holiday.png", content_type="image/png")
    assert response.status_code == 201
    assert response.get_json()["type"] == "file"
    assert response.get_json()["content_type"] == "application/pdf"


def test_a_type_meta_does_not_take_is_422_naming_the_formats(client, bearer):
    before, keys = table_counts(), stored_keys()
    response = upload(client, bearer, b"just some text, named like a pdf", name="invoice.pdf")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "png, jpeg, gif" in error["fields"]["file"][0]
    assert "PDF" in error["fields"]["file"][0]
    webp = io.BytesIO()
    Image.new("RGB", (4, 4)).save(webp, "WEBP")
    response = upload(client, bearer, webp.getvalue(), name="x.webp")
    assert response.status_code == 422
    assert "image/webp" in response.get_json()["error"]["fields"]["file"][0]
    assert table_counts() == before and stored_keys() == keys


def test_an_image_over_8_mb_is_413_naming_the_limit(client, bearer):
    before, keys = table_counts(), stored_keys()
    response = upload(client, bearer, padded_png(8_000_001))
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_large"
    assert "up to 8 MB" in error["fields"]["file"][0] and "8.0 MB" in error["fields"]["file"][0]
    assert table_counts() == before and stored_keys() == keys
    assert upload(client, bearer, padded_png(8_000_000)).status_code == 201


def test_a_body_over_25_mb_is_413_naming_the_limit(client, bearer):
    before = table_counts()
    response = upload(client, bearer, PDF + b"\x00" * 26_000_000, name="big.pdf")
    assert response.status_code == 413
    assert "at most 25 MB" in response.get_json()["error"]["message"]
    assert table_counts() == before


def test_an_mp4_is_a_video_unless_sent_as_audio(client, bearer):
    video = upload(client, bearer, MP4, name="clip.mp4").get_json()
    assert (video["type"], video["content_type"]) == ("video", "video/mp4")
    audio = upload(client, bearer, MP4, name="voice.mp4", type="audio").get_json()
    assert (audio["type"], audio["content_type"]) == ("audio", "audio/mp4")
    refused = upload(client, bearer, MP4, name="clip.mp4", type="image")
    assert refused.status_code == 422
    assert "png, jpeg or gif" in refused.get_json()["error"]["fields"]["type"][0]


def test_no_file_is_422_and_no_token_is_401(client, bearer):
    response = client.post(f"{API}/uploads", data={}, headers=bearer)
    assert response.status_code == 422
    assert "file" in response.get_json()["error"]["fields"]
    assert upload(client, {}, png()).status_code == 401


# Replying with an upload -----------------------------------------------------------------------


def reply(client, headers, conversation_id: int, attachments: list[dict], text: str | None = None):
    body = {"attachments": attachments, **({"text": text} if text else {})}
    return client.post(
        f"{API}/conversations/{conversation_id}/messages", json=body, headers=headers
    )


def test_a_reply_keeps_the_upload_on_its_attachment(client, world, bearer, monkeypatch):
    monkeypatch.setattr("helpdesk.web.api.conversations.enqueue_delivery", lambda _id: True)
    upload_id = upload(client, bearer, png(), name="receipt.png").get_json()["id"]
    response = reply(
        client, bearer, world.conversation.id, [{"type": "image", "upload_id": upload_id}]
    )
    assert response.status_code == 202, response.get_json()
    message = db.session.get(Message, response.get_json()["id"])
    (attachment,) = message.attachments
    assert attachment["type"] == "image" and attachment["upload_id"] == upload_id
    assert attachment["media_id"] == upload_id and attachment["name"] == "receipt.png"
    media = db.session.get(MediaObject, upload_id)
    assert (media.message_id, media.attachment_index) == (message.id, 0)
    again = reply(
        client, bearer, world.conversation.id, [{"type": "image", "upload_id": upload_id}]
    )
    assert again.status_code == 422
    assert "already sent" in again.get_json()["error"]["fields"]["attachments.0.upload_id"][0]


@pytest.mark.parametrize("case", ["other brand", "missing", "wrong type", "url and id"])
def test_a_foreign_missing_or_mismatched_upload_is_422_changing_nothing(
    client, world, bearer, monkeypatch, case
):
    monkeypatch.setattr("helpdesk.web.api.conversations.enqueue_delivery", lambda _id: True)
    other = World("other")
    theirs = uploads.accept(other.brand.id, png(), "theirs.png")
    mine = upload(client, bearer, png()).get_json()["id"]
    db.session.commit()
    attachment = {
        "other brand": {"type": "image", "upload_id": theirs.id},
        "missing": {"type": "image", "upload_id": 987654},
        "wrong type": {"type": "video", "upload_id": mine},
        "url and id": {"type": "image", "upload_id": mine, "url": "https://example.com/a.png"},
    }[case]
    before = table_counts()
    response = reply(client, bearer, world.conversation.id, [attachment], text="Here")
    assert response.status_code == 422
    field = {"wrong type": "attachments.0.type", "url and id": "attachments"}.get(
        case, "attachments.0.upload_id"
    )
    assert field in response.get_json()["error"]["fields"], response.get_json()
    assert table_counts() == before
    assert db.session.get(MediaObject, theirs.id).message_id is None


# The signed link ---------------------------------------------------------------------------------


def link_token(url: str) -> str:
    return url.rsplit("/m/", 1)[1]


def test_the_link_serves_the_file_without_login(app, client, bearer):
    data = png()
    body = upload(client, bearer, data).get_json()
    stranger = app.test_client()
    response = stranger.get(f"/m/{link_token(body['url'])}")
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cache = response.headers["Cache-Control"]
    assert cache.startswith("private, max-age=") and 86390 <= int(cache.split("=")[1]) <= 86400
    assert "Set-Cookie" not in response.headers
    pdf = upload(client, bearer, PDF, name="Invoice 7.pdf").get_json()
    served = stranger.get(f"/m/{link_token(pdf['url'])}")
    assert served.headers["Content-Type"] == "application/pdf"
    assert served.headers["Content-Disposition"] == 'inline; filename="Invoice 7.pdf"'


def test_a_forged_token_is_refused(app, client, bearer):
    token = link_token(upload(client, bearer, png()).get_json()["url"])
    stranger = app.test_client()
    payload, _, signature = token.rpartition(".")
    forged = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    other_key = itsdangerous.URLSafeTimedSerializer("another secret", salt=uploads.LINK_SALT)
    other_salt = itsdangerous.URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="other")
    media_id = int(db.session.scalar(select(MediaObject.id).order_by(MediaObject.id.desc())))
    for bad in (
        forged,
        other_key.dumps({"media": media_id}),
        other_salt.dumps({"media": media_id}),
        "nonsense",
        "x" * 600,
    ):
        assert stranger.get(f"/m/{bad}").status_code == 404, bad


def test_an_expired_token_is_refused(app, client, bearer, monkeypatch):
    body = upload(client, bearer, png()).get_json()
    yesterday = int(time.time()) - 24 * 60 * 60 - 1
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda _self: yesterday)
    with app.test_request_context():
        old = uploads.signed_url(body["id"])
    monkeypatch.undo()
    stranger = app.test_client()
    assert stranger.get(f"/m/{link_token(old)}").status_code == 404
    assert stranger.get(f"/m/{link_token(body['url'])}").status_code == 200
    monkeypatch.setitem(app.config, "UPLOAD_LINK_MAX_AGE", 0)
    time.sleep(1.1)
    assert stranger.get(f"/m/{link_token(body['url'])}").status_code == 404


def test_a_purged_upload_is_no_longer_served(app, client, bearer):
    body = upload(client, bearer, png()).get_json()
    media = db.session.get(MediaObject, body["id"])
    media.status = MediaStatus.PURGED
    db.session.commit()
    assert app.test_client().get(f"/m/{link_token(body['url'])}").status_code == 404


# Through the Send API, fetched as Meta would -----------------------------------------------------


@pytest.fixture
def served(app, monkeypatch) -> Iterator[str]:
    """The app on a real port, as PUBLIC_BASE_URL: the simulator fetches links there."""
    with serving(app) as base_url:
        monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", base_url)
        yield base_url


def queued_reply(client, world, bearer, monkeypatch, data: bytes, name: str) -> tuple[int, int]:
    monkeypatch.setattr("helpdesk.web.api.conversations.enqueue_delivery", lambda _id: True)
    upload_id = upload(client, bearer, data, name=name).get_json()["id"]
    response = reply(
        client,
        bearer,
        world.conversation.id,
        [{"type": "image", "upload_id": upload_id}],
        "Your receipt",
    )
    assert response.status_code == 202, response.get_json()
    db.session.commit()
    return response.get_json()["id"], upload_id


def test_an_upload_reaches_the_simulator_through_the_signed_link(
    client, world, bearer, monkeypatch, served, sim
):
    sim.fetch_attachments(True)
    data = png((64, 48))
    message_id, _upload_id = queued_reply(client, world, bearer, monkeypatch, data, "receipt.png")
    assert delivery.deliver(message_id) == delivery.SENT
    text, image = sim.sends()
    assert text["json"]["message"] == {"text": "Your receipt"}
    url = image["json"]["message"]["attachment"]["payload"]["url"]
    assert url.startswith(f"{served}/m/")
    assert image["json"]["message"]["attachment"]["type"] == "image"
    (fetched,) = sim.fetches()
    assert fetched["url"] == url and fetched["ok"] is True
    assert fetched["status"] == 200 and fetched["content_type"] == "image/png"
    assert fetched["length"] == len(data)
    assert fetched["sha256"] == hashlib.sha256(data).hexdigest()
    assert image["fetched"]["ok"] is True
    db.session.expire_all()
    assert db.session.get(Message, message_id).status is MessageStatus.SENT


def test_the_simulator_refuses_a_message_whose_link_fails(
    client, world, bearer, monkeypatch, served, sim
):
    sim.fetch_attachments(True)
    message_id, upload_id = queued_reply(client, world, bearer, monkeypatch, png(), "gone.png")
    db.session.get(MediaObject, upload_id).status = MediaStatus.PURGED  # erased meanwhile
    db.session.commit()
    assert delivery.deliver(message_id) == delivery.FAILED
    refused = sim.sends()[-1]
    assert refused["status"] == 400
    assert refused["response"]["error"]["code"] == 100
    assert refused["response"]["error"]["error_subcode"] == 2018047
    assert refused["fetched"]["status"] == 404 and refused["fetched"]["ok"] is False
    db.session.expire_all()
    assert db.session.get(Message, message_id).status is MessageStatus.FAILED


# The reply box -----------------------------------------------------------------------------------


@pytest.fixture
def agent_client(app, world):
    client = app.test_client()
    signed_in(client, world.agent)
    client.csrf = csrf_token(client, "/inbox")
    return client


def console_upload(client, data: bytes, name: str, csrf: str | None):
    form = {"file": (io.BytesIO(data), name)}
    if csrf is not None:
        form["csrf_token"] = csrf
    return client.post("/uploads", data=form, headers={"Accept": "application/json"})


def test_the_reply_box_sends_a_file(agent_client, world, monkeypatch):
    monkeypatch.setattr("helpdesk.web.console.conversations.enqueue_delivery", lambda _id: True)
    response = console_upload(agent_client, png(), "smile.png", agent_client.csrf)
    assert response.status_code == 201, response.get_json()
    upload_id = response.get_json()["id"]
    assert db.session.get(MediaObject, upload_id).uploaded_by_id == world.agent.id
    sent = agent_client.post(
        f"/conversations/{world.conversation.id}/reply",
        data={"csrf_token": agent_client.csrf, "text": "", "upload_id": str(upload_id)},
    )
    assert sent.status_code == 302, sent.get_data(as_text=True)[:2000]
    message = db.session.scalars(
        select(Message).where(
            Message.conversation_id == world.conversation.id,
            Message.direction == Direction.OUTBOUND,
        )
    ).one()
    assert message.attachments[0]["upload_id"] == upload_id
    assert message.attachments[0]["type"] == "image"


def test_the_reply_box_refuses_another_brands_upload(agent_client, world, monkeypatch):
    monkeypatch.setattr("helpdesk.web.console.conversations.enqueue_delivery", lambda _id: True)
    other = World("other")
    theirs = uploads.accept(other.brand.id, png(), "theirs.png").id
    db.session.commit()
    before = table_counts()
    refused = agent_client.post(
        f"/conversations/{world.conversation.id}/reply",
        data={"csrf_token": agent_client.csrf, "text": "Look", "upload_id": str(theirs)},
    )
    assert refused.status_code == 422
    assert "no such upload" in refused.get_data(as_text=True)
    after = table_counts()
    for counts in (before, after):  # the page shown again records the agent's view
        counts.pop("conversation_views")
    assert after == before
    assert db.session.get(MediaObject, theirs).message_id is None


def test_the_reply_box_upload_needs_csrf_and_a_session(app, agent_client):
    before, keys = table_counts(), stored_keys()
    refused = console_upload(agent_client, png(), "a.png", None)
    assert refused.status_code == 400
    stranger = app.test_client()
    assert console_upload(stranger, png(), "a.png", csrf_token(stranger)).status_code == 401
    assert console_upload(agent_client, png(), "a.png", "forged").status_code == 400
    too_big = console_upload(agent_client, padded_png(9_000_000), "big.png", agent_client.csrf)
    assert too_big.status_code == 413
    assert "up to 8 MB" in too_big.get_json()["error"]["message"]
    huge = console_upload(agent_client, padded_png(26_000_000), "huge.png", agent_client.csrf)
    assert huge.status_code == 413
    assert "at most 25 MB" in huge.get_json()["error"]["message"]
    assert table_counts() == before and stored_keys() == keys
