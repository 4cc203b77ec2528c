from helpdesk.channels.models import Channel
from helpdesk.extensions import db
from tests.factories import ChannelFactory, ContactFactory


def test_factories_build_a_brand_channel_and_contact():
    contact = ContactFactory()
    channel = db.session.get(Channel, contact.channel_id)
    assert channel.access_token == "test-page-token"
    assert contact.brand_id == channel.brand_id


def test_home_page_answers(client):
    ChannelFactory()
    db.session.commit()
    assert client.get("/").status_code == 200
    assert client.get("/healthz").json["status"] == "ok"
