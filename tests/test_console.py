"""The web console over HTTP: sessions, CSRF, the security headers, escaping, and that its
pages and actions follow the API's rules (the browser tests are in test_console_browser)."""

from __future__ import annotations

import html
import json
import re

import httpx

from tests.console_support import csrf_of, declare, sign_in
from tests.support import ADMIN_TOKEN, TEST_TLS, create_principal, event


def test_signing_in_sets_an_httponly_strict_session_cookie(gateway: str) -> None:
    """A valid token becomes an HttpOnly, SameSite=Strict cookie (not Secure over plain HTTP)
    that opens the console without any Authorization header."""
    with httpx.Client(verify=TEST_TLS, base_url=gateway, timeout=10) as c:
        form = c.get("/console/sign-in")
        r = c.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": ADMIN_TOKEN})
        assert r.status_code == 303 and r.headers["location"] == "/console/incidents"
        cookie = next(v for k, v in r.headers.multi_items() if v.startswith("incidents_session="))
        attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attrs
        assert "secure" not in attrs
        assert ADMIN_TOKEN not in cookie
        page = c.get("/console/incidents")
        assert page.status_code == 200 and "Incidents" in page.text


def test_a_wrong_token_gets_the_form_again_and_no_session(gateway: str) -> None:
    """A mistyped token answers 401 with the sign-in form and sets no session cookie."""
    with httpx.Client(verify=TEST_TLS, base_url=gateway, timeout=10) as c:
        form = c.get("/console/sign-in")
        r = c.post("/console/sign-in", data={"csrf": csrf_of(form.text), "token": "nope" * 5})
        assert r.status_code == 401 and 'name="token"' in r.text
        assert "incidents_session" not in c.cookies
        assert c.get("/console/incidents").status_code == 303


def test_every_page_is_sent_under_a_strict_content_security_policy(gateway: str) -> None:
    """Pages, redirects and static files carry a CSP allowing only this origin, no framing."""
    with sign_in(gateway, ADMIN_TOKEN) as c:
        for path in ("/console/sign-in", "/console/incidents", "/console/static/console.js"):
            csp = c.get(path).headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
        assert "<script>" not in c.get("/console/incidents").text.replace(
            '<script src="/console/static/console.js" defer></script>', ""
        )


def test_a_form_without_its_csrf_token_is_refused(gateway: str, client: httpx.Client) -> None:
    """A POST with a missing or another session's CSRF token is a 403 page and does nothing."""
    incident = declare(client)
    with sign_in(gateway, ADMIN_TOKEN) as c, sign_in(gateway, ADMIN_TOKEN) as other:
        other_csrf = csrf_of(other.get("/console/incidents").text)
        for form in ({"action": "ack"}, {"action": "ack", "csrf": other_csrf}):
            r = c.post(f"/console/incidents/{incident}", data=form)
            assert r.status_code == 403 and "CSRF" in r.text
        assert client.get(f"/v1/incidents/{incident}").json()["acknowledged_at"] is None


def test_a_title_with_markup_is_shown_as_text(gateway: str, client: httpx.Client) -> None:
    """An incident titled <script>alert(1)</script> is escaped in the list and on its page."""
    incident = declare(client, title="<script>alert(1)</script>")
    with sign_in(gateway, ADMIN_TOKEN) as c:
        for path in ("/console/incidents", f"/console/incidents/{incident}"):
            html = c.get(path).text
            assert "<script>alert(1)</script>" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_acknowledging_posts_an_event_as_the_signed_in_principal(
    gateway: str, client: httpx.Client
) -> None:
    """The Acknowledge button posts im.incident.ack through the pipeline with imactor set to
    the principal's name; the timeline shows it."""
    incident = declare(client)
    created = create_principal(client, name="oncall-alice", publish=["im.incident.*"])
    with sign_in(gateway, created["token"]) as c:
        page = c.get(f"/console/incidents/{incident}")
        r = c.post(
            f"/console/incidents/{incident}",
            data={"csrf": csrf_of(page.text), "action": "ack", "text": "on it"},
        )
        assert r.status_code == 303
        assert "by oncall-alice" in c.get(f"/console/incidents/{incident}").text
    timeline = client.get(f"/v1/incidents/{incident}/timeline").json()["timeline"]
    ack = next(e for e in timeline if e["type"] == "im.incident.ack")
    assert ack["actor"] == "oncall-alice"
    assert client.get(f"/v1/incidents/{incident}").json()["acknowledged_at"]


def test_a_refused_move_shows_the_problem_detail(gateway: str, client: httpx.Client) -> None:
    """Posting a move the pipeline refuses answers the incident page with the problem's
    status and detail, and changes nothing."""
    incident = declare(client)
    quiet = create_principal(client, name="ack-only", publish=["im.incident.ack"])
    with sign_in(gateway, quiet["token"]) as c:
        page = c.get(f"/console/incidents/{incident}")
        assert 'value="ack"' in page.text and 'value="resolve"' not in page.text
        r = c.post(
            f"/console/incidents/{incident}", data={"csrf": csrf_of(page.text), "action": "resolve"}
        )
        assert r.status_code == 403 and 'id="problem"' in r.text
        assert "may not publish" in r.text
    assert client.get(f"/v1/incidents/{incident}").json()["status"] == "open"


def test_a_reader_sees_no_action_buttons(gateway: str, client: httpx.Client) -> None:
    """A principal that may not publish (a subscriber) sees the incident but no actions."""
    incident = declare(client)
    reader = create_principal(client, name="reader", roles=["subscriber"], publish=[])
    with sign_in(gateway, reader["token"]) as c:
        page = c.get(f"/console/incidents/{incident}")
        assert page.status_code == 200 and 'name="action"' not in page.text


def test_a_restricted_incident_is_not_shown_to_an_internal_clearance_user(
    gateway: str, client: httpx.Client
) -> None:
    """The list and the page follow the API's visibility rule: a restricted incident is
    absent (404) for an internal-clearance principal, shown to the admin."""
    secret = declare(client, title="Payroll breach", imdataclass="restricted")
    declare(client, title="Checkout slow")
    user = create_principal(client, name="intern", roles=["subscriber"], clearance="internal")
    with sign_in(gateway, user["token"]) as c:
        listing = c.get("/console/incidents").text
        assert "Checkout slow" in listing and "Payroll breach" not in listing
        assert c.get(f"/console/incidents/{secret}").status_code == 404
    with sign_in(gateway, ADMIN_TOKEN) as admin:
        assert "Payroll breach" in admin.get("/console/incidents").text


def test_a_session_cookie_reads_the_api_but_does_not_write_it(
    gateway: str, client: httpx.Client
) -> None:
    """The cookie authenticates GETs (the live stream, reads) but not API writes, which
    still need the bearer header; a bearer header wins over the cookie."""
    declare(client)
    with sign_in(gateway, ADMIN_TOKEN) as c:
        assert c.get("/v1/incidents").status_code == 200
        r = c.post("/v1/events", json={}, headers={"content-type": "application/json"})
        assert r.status_code == 401 and "Bearer" in r.json()["detail"]
        wrong = c.get("/v1/incidents", headers={"Authorization": "Bearer not-a-token-at-all"})
        assert wrong.status_code == 401


def test_an_altered_cookie_is_no_session(gateway: str) -> None:
    """A session cookie changed by one character no longer signs anyone in."""
    with sign_in(gateway, ADMIN_TOKEN) as c:
        value = c.cookies["incidents_session"]
        c.cookies.clear()
        flipped = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
        c.cookies.set("incidents_session", flipped)
        assert c.get("/console/incidents").status_code == 303
        assert c.get("/v1/incidents").status_code == 401


def test_signing_out_ends_the_session_in_the_browser(gateway: str) -> None:
    """Sign-out (a CSRF-guarded POST) deletes the cookie and goes back to the sign-in page."""
    with sign_in(gateway, ADMIN_TOKEN) as c:
        page = c.get("/console/incidents")
        r = c.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
        assert "incidents_session" not in c.cookies
        assert c.get("/console/incidents").status_code == 303


def test_a_copied_cookie_opens_nothing_after_sign_out(gateway: str) -> None:
    """Signing out ends the session itself: a copy of its cookie, sent afterwards from
    elsewhere, is refused by the console and by the API's reads."""
    with sign_in(gateway, ADMIN_TOKEN) as c:
        page = c.get("/console/incidents")
        copied = c.cookies["incidents_session"]
        assert c.post("/console/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
    with httpx.Client(
        verify=TEST_TLS, base_url=gateway, cookies={"incidents_session": copied}
    ) as thief:
        assert thief.get("/console/incidents").status_code == 303
        assert thief.get("/v1/incidents").status_code == 401


def test_revoking_a_principal_ends_its_console_sessions(gateway: str, client: httpx.Client) -> None:
    """The session stands for its token: once the principal is revoked it signs no one in."""
    created = create_principal(client, name="temp", roles=["subscriber"])
    with sign_in(gateway, created["token"]) as c:
        assert c.get("/console/incidents").status_code == 200
        assert client.delete(f"/v1/principals/{created['id']}").status_code == 204
        assert c.get("/console/incidents").status_code == 303


def test_principals_are_for_admins_only(gateway: str, client: httpx.Client) -> None:
    """The principals page lists principals for an admin and is a 403 page for others."""
    user = create_principal(client, name="someone", roles=["subscriber"])
    with sign_in(gateway, user["token"]) as c:
        assert c.get("/console/principals").status_code == 403
        assert c.get("/console/dead-letters").status_code == 403
    with sign_in(gateway, ADMIN_TOKEN) as admin:
        assert "someone" in admin.get("/console/principals").text


def test_older_incidents_keep_the_filters(gateway: str, client: httpx.Client) -> None:
    """With more SEV1 incidents than a page holds, the Older incidents link keeps
    severity=SEV1: the second page shows the remaining SEV1 incidents and no SEV3 one."""
    batch = [
        event("im.incident.declare", {"title": f"Outage {i}", "severity": "SEV1", "service": "a"})
        for i in range(55)
    ]
    minor = {"title": "Minor", "severity": "SEV3", "service": "a"}
    batch.insert(0, event("im.incident.declare", minor))  # the oldest: on a second page
    r = client.post(
        "/v1/events",
        content=json.dumps(batch),
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert r.status_code == 202, r.text
    with sign_in(gateway, ADMIN_TOKEN) as c:
        first = c.get("/console/incidents", params={"severity": "SEV1"}).text
        link = re.search(r'<a class="more" href="([^"]+)">Older incidents</a>', first)
        assert link, "no link to older incidents"
        second = c.get("/console/incidents" + html.unescape(link.group(1))).text
        titles = re.findall(r">(Outage \d+|Minor)<", first + second)
        assert sorted(titles) == sorted(f"Outage {i}" for i in range(55))
