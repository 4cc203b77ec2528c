"""The S3 media store (MEDIA_STORAGE=s3://bucket/prefix) against a local S3-compatible server:
moto's, started here on a free port and reached through AWS_ENDPOINT_URL, as a MinIO or any
other S3-compatible store would be. Skipped, with the reason, where moto cannot be imported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from helpdesk.dm.models import Contact
from helpdesk.extensions import db
from helpdesk.media import copies
from helpdesk.media.models import MediaStatus
from helpdesk.media.store import MediaMissing, S3Store, store_for
from helpdesk.privacy import erase
from tests.helpers.console import signed_in
from tests.helpers.media import Route, media_server, png, scan_store
from tests.helpers.workers import free_port
from tests.test_media import PERSON, Desk, media_of

moto_server = pytest.importorskip(
    "moto.server", reason="needs moto[server] for a local S3-compatible server"
)
boto3 = pytest.importorskip("boto3", reason="the S3 store is reached through boto3")

BUCKET = "helpdesk-media-test"
PHOTO = png(640, 480, comment="ZQS3MEDIA7171")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(app, monkeypatch, s3_endpoint) -> S3Store:
    """The app's store is a bucket on the local server for this test."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    store = store_for(f"s3://{BUCKET}/media")
    assert isinstance(store, S3Store)
    store.client.create_bucket(Bucket=BUCKET)
    for key in store.keys():
        store.delete(key)
    monkeypatch.setitem(app.config, "MEDIA_STORAGE", f"s3://{BUCKET}/media")
    monkeypatch.setitem(app.extensions, "media_store", store)
    return store


def test_the_s3_store_puts_gets_lists_and_deletes_under_its_prefix(s3):
    s3.put("7/abc", b"bytes", "image/png")
    assert s3.get("7/abc") == b"bytes" and s3.keys() == ["7/abc"]
    listed = s3.client.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [item["Key"] for item in listed] == ["media/7/abc"]
    s3.delete("7/abc")
    assert s3.keys() == []
    with pytest.raises(MediaMissing):
        s3.get("7/abc")


def test_an_inbound_image_is_copied_into_the_bucket_shown_and_erased(app, client, monkeypatch, s3):
    monkeypatch.setitem(app.config, "MEDIA_FETCH_ALLOW_PRIVATE", True)
    desk = Desk()
    with media_server({"/p.png": Route(200, PHOTO, {"Content-Type": "image/png"})}) as cdn:
        message = desk.receive(("image", cdn.url("/p.png")))
        [media] = media_of(message)
        db.session.commit()
        assert copies.copy(media.id) is MediaStatus.STORED
    [media] = media_of(message)
    assert s3.get(media.storage_key) == PHOTO and media.thumbnail_key in s3.keys()
    signed_in(client, desk.agent)
    db.session.rollback()
    assert client.get(f"/media/{media.id}").data == PHOTO
    assert client.get(f"/media/{media.id}/thumbnail").mimetype == "image/webp"

    contact = db.session.scalar(select(Contact).where(Contact.platform_id == PERSON))
    erase.erase_contact(contact)
    db.session.commit()

    assert scan_store(s3, ["ZQS3MEDIA7171"], [media.storage_key, media.thumbnail_key]) == []
    assert s3.keys() == []
