"""The Graph API simulator answers like Meta, records what it gets, and signs what it fires."""

from __future__ import annotations

import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from devtools.graphsim import webhooks
from devtools.graphsim.cli import graph_sim
from devtools.graphsim.testing import running_simulator, running_webhook_receiver

ACCOUNT = "17841400000000001"
CUSTOMER = "6120000000000001"
TOKEN = "sim-test-token-1234"
SECRET = "sim-app-secret"


@pytest.fixture
def sim():
    with running_simulator() as handle:
        yield handle


def post(sim, body, token: str | None = TOKEN, account: str = ACCOUNT) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{sim.base_url}/{account}/messages", json=body, headers=headers)


def text_body(text: str = "Hello!", recipient: str = CUSTOMER) -> dict:
    return {"recipient": {"id": recipient}, "message": {"text": text}}


def error_of(response: httpx.Response) -> dict:
    return response.json()["error"]


# Send API ---------------------------------------------------------------------------------------


def test_text_send_is_answered_with_a_fresh_mid_and_recorded(sim):
    response = post(sim, text_body())
    assert response.status_code == 200
    answer = response.json()
    assert answer["recipient_id"] == CUSTOMER
    assert answer["message_id"].startswith("m_sim_")
    [recorded] = sim.sends()
    assert recorded["method"] == "POST"
    assert recorded["path"] == f"/v25.0/{ACCOUNT}/messages"
    assert recorded["json"] == text_body()
    assert recorded["status"] == 200
    assert recorded["response"] == answer
    assert recorded["received_at"]


def test_every_send_gets_a_different_mid(sim):
    mids = {post(sim, text_body()).json()["message_id"] for _ in range(5)}
    assert len(mids) == 5


def test_any_version_prefix_is_accepted(sim):
    response = httpx.post(
        f"{sim.root_url}/v19.0/{ACCOUNT}/messages",
        json=text_body(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200


def test_missing_recipient_is_refused_with_code_100(sim):
    response = post(sim, {"message": {"text": "hi"}})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 100
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]


def test_text_over_1000_bytes_is_refused_with_code_100(sim):
    assert post(sim, text_body("é" * 500)).status_code == 200  # exactly 1000 bytes
    response = post(sim, text_body("é" * 500 + "!"))
    assert response.status_code == 400
    assert error_of(response)["code"] == 100


@pytest.mark.parametrize(
    "body",
    [
        {"recipient": {"id": CUSTOMER}},
        {"recipient": {"id": CUSTOMER}, "message": {"text": "a", "attachment": {}}},
        {"recipient": {"id": CUSTOMER}, "message": {"attachment": {"type": "image"}}},
        {"recipient": {}, "message": {"text": "a"}},
        {**text_body(), "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE"},
        {"recipient": {"id": CUSTOMER}, "sender_action": "react", "payload": {"reaction": "love"}},
    ],
    ids=["no-message", "text-and-attachment", "no-url", "empty-recipient", "tag", "react-no-mid"],
)
def test_malformed_sends_are_refused_with_code_100(sim, body):
    response = post(sim, body)
    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_send_without_a_token_is_refused_with_code_190(sim):
    response = post(sim, text_body(), token=None)
    assert response.status_code == 401
    assert error_of(response)["code"] == 190


def test_attachment_reply_to_and_human_agent_tag_are_accepted(sim):
    body = {
        "recipient": {"id": CUSTOMER},
        "message": {"attachment": {"type": "image", "payload": {"url": "https://x.test/a.jpg"}}},
        "reply_to": {"mid": "m_quoted"},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
    }
    assert post(sim, body).status_code == 200
    assert sim.sends()[0]["json"] == body


def test_reactions_are_answered_without_a_mid(sim):
    react = {
        "recipient": {"id": CUSTOMER},
        "sender_action": "react",
        "payload": {"message_id": "m_1", "reaction": "love"},
    }
    unreact = {
        "recipient": {"id": CUSTOMER},
        "sender_action": "unreact",
        "payload": {"message_id": "m_1"},
    }
    assert post(sim, react).json() == {"recipient_id": CUSTOMER}
    assert post(sim, unreact).json() == {"recipient_id": CUSTOMER}


# Error injection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "kind", "subcode"),
    [
        (2, 500, "IGApiException", None),
        (613, 400, "OAuthException", None),
        (190, 401, "OAuthException", 463),
        (551, 400, "IGApiException", 1545041),
        (100, 400, "OAuthException", None),
    ],
)
def test_injected_error_has_metas_shape_and_status(sim, code, status, kind, subcode):
    sim.fail_next(code)
    response = post(sim, text_body())
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert error["type"] == kind
    assert error.get("error_subcode") == subcode
    assert error["message"] and error["fbtrace_id"]
    assert post(sim, text_body()).status_code == 200, "only the next send was to fail"


def test_injected_error_lasts_the_given_number_of_sends(sim):
    sim.fail_next(4, times=2, subcode=1234, message="slow down", status=429)
    first, second, third = (post(sim, text_body()) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert error_of(first) | {"fbtrace_id": None} == {
        "message": "slow down",
        "type": "OAuthException",
        "code": 4,
        "error_subcode": 1234,
        "fbtrace_id": None,
    }


def test_injected_error_can_target_one_recipient(sim):
    sim.fail_next(551, recipient_id="6120000000000002")
    assert post(sim, text_body(recipient=CUSTOMER)).status_code == 200
    assert error_of(post(sim, text_body(recipient="6120000000000002")))["code"] == 551
    assert post(sim, text_body(recipient="6120000000000002")).status_code == 200


def test_cleared_errors_no_longer_fire(sim):
    sim.fail_next(2, times=None)
    assert post(sim, text_body()).status_code == 500
    sim.clear_errors()
    assert post(sim, text_body()).status_code == 200


def test_an_error_rule_without_code_or_delay_is_refused(sim):
    response = httpx.post(f"{sim.root_url}/_sim/errors", json={"times": 1})
    assert response.status_code == 400


def test_closed_window_is_refused_with_code_10_subcode_2018278(sim):
    sim.close_window(CUSTOMER)
    response = post(sim, text_body())
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["error_subcode"]) == (10, 2018278)
    assert "outside of allowed window" in error["message"]
    assert post(sim, text_body(recipient="6120000000000002")).status_code == 200
    sim.close_window(CUSTOMER, closed=False)
    assert post(sim, text_body()).status_code == 200


def test_delay_answers_late_but_successfully(sim):
    sim.delay(400)
    started = time.monotonic()
    response = post(sim, text_body())
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    post(sim, text_body())
    assert time.monotonic() - started < 0.4


def test_a_slow_answer_does_not_hold_up_the_control_endpoints(sim):
    sim.delay(1500)
    with httpx.Client() as client:
        pending = client.build_request(
            "POST",
            f"{sim.base_url}/{ACCOUNT}/messages",
            json=text_body(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        thread = threading.Thread(target=client.send, args=(pending,))
        thread.start()
        arrived = sim.wait_for_requests(1, timeout=5)
        assert len(arrived) == 1 and arrived[0]["status"] is None  # recorded before answering
        thread.join()
    assert sim.sends()[0]["status"] == 200


# Records ----------------------------------------------------------------------------------------


def test_recorded_requests_never_contain_the_token(sim):
    post(sim, text_body())
    httpx.get(f"{sim.base_url}/{CUSTOMER}", params={"access_token": TOKEN})
    dump = json.dumps(sim.requests())
    assert TOKEN not in dump
    recorded = sim.requests()
    assert recorded[0]["headers"]["Authorization"] == "Bearer <redacted>"
    assert recorded[0]["token_hint"] == "..." + TOKEN[-4:]
    assert recorded[1]["token_hint"] == "..." + TOKEN[-4:]


def test_clearing_forgets_recorded_requests(sim):
    post(sim, text_body())
    sim.clear()
    assert sim.requests() == []
    post(sim, text_body())
    assert len(sim.requests()) == 1


# Profiles ---------------------------------------------------------------------------------------


def test_profile_lookup_answers_the_requested_fields(sim):
    response = httpx.get(
        f"{sim.base_url}/{CUSTOMER}",
        params={"fields": "name,username,profile_pic,is_user_follow_business"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200
    profile = response.json()
    assert set(profile) == {"id", "name", "username", "profile_pic", "is_user_follow_business"}
    assert profile["id"] == CUSTOMER
    assert profile["profile_pic"].startswith("https://")
    assert sim.requests("profile")[0]["args"]["fields"].startswith("name,")


def test_configured_profile_is_returned(sim):
    sim.set_profile(CUSTOMER, name="Mia Wong", username="mia.w", is_business_follow_user=True)
    profile = httpx.get(
        f"{sim.base_url}/{CUSTOMER}", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert (profile["name"], profile["username"]) == ("Mia Wong", "mia.w")
    assert profile["is_business_follow_user"] is True
    assert profile["is_user_follow_business"] is False


def test_profile_lookup_can_fail_on_demand(sim):
    sim.fail_next(100, endpoint="profile")
    response = httpx.get(f"{sim.base_url}/{CUSTOMER}", headers={"Authorization": "Bearer t"})
    assert error_of(response)["code"] == 100
    assert post(sim, text_body()).status_code == 200, "message sends were not meant to fail"


# Echoes -----------------------------------------------------------------------------------------


def test_echo_of_a_send_is_signed_and_carries_the_app_id():
    with (
        running_webhook_receiver() as receiver,
        running_simulator(echo_to=receiver.url, app_secret=SECRET, app_id="4242") as sim,
    ):
        body = {**text_body("Thanks, Mia 💛"), "reply_to": {"mid": "m_quoted"}}
        mid = post(sim, body).json()["message_id"]
        [echo] = receiver.wait_for(1)
    assert echo.headers["X-Hub-Signature-256"] == webhooks.sign(echo.raw, SECRET)
    delivery = json.loads(echo.raw)
    assert delivery["object"] == "instagram"
    [entry] = delivery["entry"]
    assert entry["id"] == ACCOUNT
    [event] = entry["messaging"]
    assert event["sender"] == {"id": ACCOUNT}
    assert event["recipient"] == {"id": CUSTOMER}
    assert event["message"] == {
        "mid": mid,
        "text": "Thanks, Mia 💛",
        "reply_to": {"mid": "m_quoted"},
        "is_echo": True,
        "app_id": "4242",
    }
    assert b"\\ud83d\\udc9b" in echo.raw, "non-ASCII is escaped, as in Meta's bytes"


def test_echo_of_an_attachment_carries_the_attachment():
    with (
        running_webhook_receiver() as receiver,
        running_simulator(echo_to=receiver.url, app_secret=SECRET) as sim,
    ):
        attachment = {"type": "image", "payload": {"url": "https://x.test/a.jpg"}}
        post(sim, {"recipient": {"id": CUSTOMER}, "message": {"attachment": attachment}})
        [echo] = receiver.wait_for(1)
    message = json.loads(echo.raw)["entry"][0]["messaging"][0]["message"]
    assert message["attachments"] == [attachment]
    assert "text" not in message


def test_echo_can_be_switched_off_and_failed_sends_are_not_echoed():
    with (
        running_webhook_receiver() as receiver,
        running_simulator(echo_to=receiver.url, app_secret=SECRET) as sim,
    ):
        sim.fail_next(2)
        post(sim, text_body())
        sim.set_echo(receiver.url, SECRET, enabled=False)
        post(sim, text_body())
        time.sleep(0.3)
        assert receiver.received == []
        assert sim.echoes() == []


# Customer webhooks ------------------------------------------------------------------------------


def test_send_dm_body_is_meta_shaped_and_signed_over_its_exact_bytes():
    with running_webhook_receiver() as receiver:
        posted = webhooks.send_dm(
            receiver.url,
            SECRET,
            ACCOUNT,
            CUSTOMER,
            text="Hi! My order #4411 hasn't arrived yet 😕",
            mid="m_in_1",
            timestamp_ms=1763800000000,
        )
        [received] = receiver.received
    assert posted.status_code == 200 and posted.mid == "m_in_1"
    assert received.raw == posted.raw
    expected = "sha256=" + hmac.new(SECRET.encode(), received.raw, "sha256").hexdigest()
    assert received.headers["X-Hub-Signature-256"] == expected
    body = json.loads(received.raw)
    [entry] = body["entry"]
    assert body["object"] == "instagram" and entry["id"] == ACCOUNT
    assert entry["messaging"] == [
        {
            "sender": {"id": CUSTOMER},
            "recipient": {"id": ACCOUNT},
            "timestamp": 1763800000000,
            "message": {"mid": "m_in_1", "text": "Hi! My order #4411 hasn't arrived yet 😕"},
        }
    ]


def test_send_dm_accepts_the_apps_base_url_and_carries_attachments_and_reply_to():
    with running_webhook_receiver() as receiver:
        base = receiver.url.removesuffix("/webhooks/instagram")
        webhooks.send_dm(
            base,
            SECRET,
            ACCOUNT,
            CUSTOMER,
            attachments=[{"type": "image", "url": "https://x.test/a.jpg"}],
            reply_to_mid="m_quoted",
        )
        [received] = receiver.received
    assert received.path == "/webhooks/instagram"
    message = json.loads(received.raw)["entry"][0]["messaging"][0]["message"]
    assert message["attachments"] == [{"type": "image", "payload": {"url": "https://x.test/a.jpg"}}]
    assert message["reply_to"] == {"mid": "m_quoted"}
    assert message["mid"]


@pytest.mark.parametrize(
    ("helper", "kwargs", "key", "expected"),
    [
        (
            webhooks.send_reaction,
            {"mid": "m_1"},
            "reaction",
            {"mid": "m_1", "action": "react", "reaction": "love", "emoji": "❤️"},
        ),
        (webhooks.send_unreact, {"mid": "m_1"}, "reaction", {"mid": "m_1", "action": "unreact"}),
        (
            webhooks.send_edit,
            {"mid": "m_1", "text": "fixed", "num_edit": 2},
            "message_edit",
            {"mid": "m_1", "text": "fixed", "num_edit": 2},
        ),
        (webhooks.send_unsend, {"mid": "m_1"}, "message", {"mid": "m_1", "is_deleted": True}),
        (webhooks.send_read, {"mid": "m_1"}, "read", {"mid": "m_1"}),
    ],
)
def test_customer_action_helpers_build_metas_events(helper, kwargs, key, expected):
    with running_webhook_receiver() as receiver:
        helper(receiver.url, SECRET, ACCOUNT, CUSTOMER, **kwargs)
        [received] = receiver.received
    assert received.headers["X-Hub-Signature-256"] == webhooks.sign(received.raw, SECRET)
    [event] = json.loads(received.raw)["entry"][0]["messaging"]
    assert event["sender"] == {"id": CUSTOMER}
    assert event[key] == expected


# Command line -----------------------------------------------------------------------------------


def test_cli_send_dm_posts_a_signed_dm():
    with running_webhook_receiver() as receiver:
        result = CliRunner().invoke(
            graph_sim,
            [
                "send-dm",
                "--app",
                receiver.url,
                "--from",
                CUSTOMER,
                "--text",
                "hi",
                "--attachment",
                "image:https://x.test/a.jpg",
            ],
            env={"INSTAGRAM_APP_SECRET": SECRET},
        )
        assert result.exit_code == 0, result.output
        [received] = receiver.received
    assert received.headers["X-Hub-Signature-256"] == webhooks.sign(received.raw, SECRET)
    event = json.loads(received.raw)["entry"][0]["messaging"][0]
    assert event["sender"] == {"id": CUSTOMER}
    assert event["recipient"] == {"id": webhooks.DEMO_ACCOUNT_ID}
    assert event["message"]["text"] == "hi"
    assert event["message"]["attachments"][0]["type"] == "image"
    assert "200 mid=" in result.output


def test_cli_send_dm_without_a_secret_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("INSTAGRAM_APP_SECRET", raising=False)
    result = CliRunner().invoke(graph_sim, ["send-dm", "--from", CUSTOMER, "--text", "hi"])
    assert result.exit_code == 2
    assert "INSTAGRAM_APP_SECRET" in result.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_module_entry_serves_the_simulator(tmp_path):
    port = _free_port()
    log = open(tmp_path / "graphsim.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.graphsim", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "graphsim.log").read_text()
                time.sleep(0.1)
        assert health.json() == {"ok": True}
        response = httpx.post(
            f"http://127.0.0.1:{port}/v25.0/{ACCOUNT}/messages",
            json=text_body(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.json()["message_id"].startswith("m_sim_")
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
