"""The by-hand commands against a real gateway: subscribe, subscriptions, deliveries, replay
and dead-letters; refusals and an unreachable gateway exit 1 with a message on stderr."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.cli.delivery_commands import since_time
from incidents.cli.main import main
from incidents.settings import Settings
from incidents.store.embedded import free_port
from tests.delivery_support import Receiver, Workers, publish
from tests.support import ADMIN_TOKEN, event


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Cli:
    """Runs ``incidents ...`` in this process against one gateway, as admin."""

    url: str
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str, url: str | None = None) -> Ran:
        self.capsys.readouterr()
        code = main([*argv, "--url", url or self.url, "--token", ADMIN_TOKEN], environ={})
        captured = self.capsys.readouterr()
        return Ran(code, captured.out, captured.err)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One quick retry, so a failing delivery is a dead letter in a fraction of a second."""
    return replace(settings, retry_schedule=(0.1,))


@pytest.fixture
def cli(gateway: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(gateway, capsys)


def subscribed(cli: Cli, rx: Receiver, path: str, *more: str) -> str:
    ran = cli("subscribe", "--sink", rx.sink(path), *more)
    assert ran.code == 0, ran.err
    rx.secrets[path] = ran.json["secret"]
    return str(ran.json["id"])


def dead_letter(
    cli: Cli, rx: Receiver, workers: Workers, client: httpx.Client, path: str
) -> tuple[str, str]:
    """A subscription whose sink fails both tries of one event: (dead letter id, sub id)."""
    sub_id = subscribed(cli, rx, path)
    rx.scripts[path] = [(500, {})] * 2
    publish(client, event())

    def dead() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = client.get("/v1/dead-letters").json()["dead_letters"]
        return [d for d in found if d["subscription"] == sub_id]

    workers.run_until(lambda: bool(dead()))
    return str(dead()[0]["id"]), sub_id


def test_subscribe_creates_the_subscription_and_prints_its_secret(
    cli: Cli, client: httpx.Client
) -> None:
    """Every flag of `subscribe` reaches the stored subscription; the secret is printed once."""
    ran = cli(
        "subscribe",
        "--sink", "http://127.0.0.1:9/hook",
        "--type", "im.incident.declare",
        "--type", "im.alert.*",
        "--source", "/pager",
        "--filter", '{"exact": {"imseverity": "SEV1"}}',
        "--mode", "binary",
        "--header", "X-Team=sre on call",
        "--description", "pager bridge",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert ran.json["secret"].startswith("whsec_")
    assert "shown only this once" in ran.err
    stored = client.get(f"/v1/subscriptions/{ran.json['id']}").json()
    assert stored["types"] == ["im.incident.declare", "im.alert.*"]
    assert stored["source"] == "/pager"
    assert stored["filters"] == [{"exact": {"imseverity": "SEV1"}}]
    assert stored["config"] == {"mode": "binary", "handshake": False}
    assert stored["protocolsettings"] == {"headers": {"X-Team": "sre on call"}}
    assert stored["description"] == "pager bridge"
    assert "secret" not in stored


def test_subscribe_takes_a_connector_format_and_its_settings_from_a_file(
    cli: Cli, client: httpx.Client, tmp_path: Path
) -> None:
    """`--format` and `--formatsettings @file` register a connector with its settings; bad
    JSON is refused before anything is sent."""
    template = "https://console.example/incidents/{id}"
    settings_file = tmp_path / "slack.json"
    settings_file.write_text(json.dumps({"incident_url_template": template}))
    ran = cli(
        "subscribe",
        "--sink", "https://hooks.slack.com/services/T0/B0/XXXX",
        "--type", "im.incident.*",
        "--format", "slack",
        "--formatsettings", f"@{settings_file}",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    stored = client.get(f"/v1/subscriptions/{ran.json['id']}").json()
    assert stored["format"] == "slack"
    assert stored["formatsettings"] == {"incident_url_template": template}
    bad = cli("subscribe", "--sink", "https://x.example/h", "--formatsettings", "{nope")
    assert bad.code == 2 and "--formatsettings" in bad.err


def test_subscriptions_list_show_rotate_disable_enable_and_delete(
    cli: Cli, client: httpx.Client
) -> None:
    """Each `subscriptions` action does what its name says, as the HTTP API then shows."""
    created = cli("subscribe", "--sink", "http://127.0.0.1:9/a", "--description", "first").json
    sub_id = created["id"]
    listed = cli("subscriptions")
    assert listed.code == 0
    header, row = listed.out.splitlines()
    assert header.split() == ["ID", "STATUS", "SINK", "TYPES", "DESCRIPTION"]
    assert row.split() == [sub_id, "active", "http://127.0.0.1:9/a", "*", "first"]
    as_json = cli("subscriptions", "list", "--json")
    assert [s["id"] for s in as_json.json["subscriptions"]] == [sub_id]
    shown = cli("subscriptions", "show", sub_id)
    assert shown.json == client.get(f"/v1/subscriptions/{sub_id}").json()
    rotated = cli("subscriptions", "rotate-secret", sub_id)
    assert rotated.code == 0 and "shown only this once" in rotated.err
    assert rotated.json["secret"] not in ("", created["secret"])
    disabled = cli("subscriptions", "disable", sub_id)
    assert disabled.out == f"{sub_id} is disabled (disabled by its owner)\n"
    assert client.get(f"/v1/subscriptions/{sub_id}").json()["status"] == "disabled"
    assert cli("subscriptions", "enable", sub_id).out == f"{sub_id} is active\n"
    assert client.get(f"/v1/subscriptions/{sub_id}").json()["status"] == "active"
    assert cli("subscriptions", "delete", sub_id).out == f"deleted {sub_id}\n"
    assert client.get(f"/v1/subscriptions/{sub_id}").status_code == 404


def test_flags_may_come_before_or_after_the_action(
    gateway: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--url` and `--token` given before a nested action are not reset by it."""
    argv = ["subscriptions", "--url", gateway, "--token", ADMIN_TOKEN, "list", "--json"]
    assert main(argv, environ={}) == 0
    assert json.loads(capsys.readouterr().out) == {"subscriptions": []}


def test_deliveries_prints_each_attempt_as_a_table_row(
    cli: Cli, rx: Receiver, workers: Workers, client: httpx.Client
) -> None:
    """A failed then successful delivery shows as two rows, newest first; --json is raw."""
    sub_id = subscribed(cli, rx, "/log")
    rx.scripts["/log"] = [(503, {})]
    publish(client, event())
    workers.run_until(lambda: len(rx.at("/log")) == 2)
    ran = cli("deliveries", sub_id)
    assert ran.code == 0
    lines = ran.out.splitlines()
    assert lines[0] == f"{sub_id} (active): 2 attempt(s), newest first"
    assert lines[1].split() == ["TIME", "OUTCOME", "CODE", "LATENCY", "ERROR", "NEXT", "ATTEMPT"]
    delivered, failed = lines[2].split(), lines[3].split()
    assert delivered[2:4] == ["delivered", "200"] and delivered[-1] == "-"
    assert failed[2:4] == ["failed", "503"] and failed[5] == "ms"
    assert failed[-1] != "-"  # the retry's time
    raw = cli("deliveries", sub_id, "--json").json
    assert raw == client.get(f"/v1/subscriptions/{sub_id}/deliveries").json()


def test_replay_queues_the_events_since_a_time_again(
    cli: Cli, rx: Receiver, workers: Workers, client: httpx.Client
) -> None:
    """`replay --since 1h` queues the stored events again and the sink receives them twice."""
    sub_id = subscribed(cli, rx, "/replay")
    publish(client, event(), event())
    workers.run_until(lambda: len(rx.at("/replay")) == 2)
    ran = cli("replay", sub_id, "--since", "1h")
    assert ran.code == 0, ran.err
    assert ran.out.startswith("queued 2 event(s) since ")
    workers.run_until(lambda: len(rx.at("/replay")) == 4)
    assert [r.event["id"] for r in rx.at("/replay")[2:]] == [
        r.event["id"] for r in rx.at("/replay")[:2]
    ]


def test_dead_letters_are_listed_and_redriven_by_id(
    cli: Cli, rx: Receiver, workers: Workers, client: httpx.Client
) -> None:
    """`dead-letters` lists a dead delivery; `redrive ID` queues it and the sink gets it."""
    dead_id, sub_id = dead_letter(cli, rx, workers, client, "/dead")
    listed = cli("dead-letters")
    assert listed.code == 0
    header, row = listed.out.splitlines()
    assert header.split() == ["ID", "SUBSCRIPTION", "INCIDENT", "ATTEMPTS", "CODE", "REASON"]
    assert row.split()[:2] == [dead_id, sub_id] and row.split()[3:5] == ["2", "500"]
    assert "retries exhausted" in listed.out
    assert [d["id"] for d in cli("dead-letters", "list", "--json").json["dead_letters"]] == [
        dead_id
    ]
    ran = cli("dead-letters", "redrive", dead_id)
    assert (ran.code, ran.out) == (0, f"redriven {dead_id}\n")
    assert client.get("/v1/dead-letters").json()["dead_letters"] == []
    workers.run_until(lambda: len(rx.at("/dead")) == 3)
    assert rx.at("/dead")[-1].verified


def test_redrive_all_queues_every_dead_letter(
    cli: Cli, rx: Receiver, workers: Workers, client: httpx.Client
) -> None:
    """`dead-letters redrive --all` redrives each listed dead letter; then none are left."""
    dead = {dead_letter(cli, rx, workers, client, path)[0] for path in ("/one", "/two")}
    ran = cli("dead-letters", "redrive", "--all")
    assert ran.code == 0, ran.err
    assert set(ran.out.split()) - {"redriven"} == dead
    assert client.get("/v1/dead-letters").json()["dead_letters"] == []
    assert cli("dead-letters", "redrive", "--all").out == "no dead letters\n"


def test_redrive_of_a_disabled_subscription_is_refused_and_counted(
    cli: Cli, rx: Receiver, workers: Workers, client: httpx.Client
) -> None:
    """A redrive the gateway refuses prints its problem, leaves the letter dead, exits 1."""
    dead_id, sub_id = dead_letter(cli, rx, workers, client, "/off")
    assert cli("subscriptions", "disable", sub_id).code == 0
    ran = cli("dead-letters", "redrive", dead_id, "msg_0_nope")
    assert ran.code == 1
    assert f"409 Conflict: subscription '{sub_id}' is disabled" in ran.err
    assert "404 Not Found: no dead letter 'msg_0_nope'" in ran.err
    assert "2 of 2 not redriven" in ran.err
    assert [d["id"] for d in client.get("/v1/dead-letters").json()["dead_letters"]] == [dead_id]


def test_redrive_needs_ids_or_all_but_not_both(cli: Cli) -> None:
    """`dead-letters redrive` with neither ids nor --all (or with both) is a usage error."""
    assert cli("dead-letters", "redrive").code == 2
    assert cli("dead-letters", "redrive", "msg_1_x", "--all").code == 2


def test_refusals_print_the_problem_on_stderr_and_exit_1(cli: Cli) -> None:
    """A 4xx answer prints its status, detail and field errors on stderr, and exits 1."""
    missing = cli("subscriptions", "show", "sub_missing")
    assert (missing.code, missing.out) == (1, "")
    assert missing.err == "incidents: 404 Not Found: no subscription 'sub_missing'\n"
    bad = cli("subscribe", "--sink", "http://127.0.0.1:9/x", "--header", "Content-Type=x")
    assert bad.code == 1
    assert "400 Bad Request: the subscription is not valid" in bad.err
    assert (
        "  /protocolsettings/headers/Content-Type: 'Content-Type' is set by the gateway" in bad.err
    )
    sub_id = cli("subscribe", "--sink", "http://127.0.0.1:9/x").json["id"]
    when = cli("replay", sub_id, "--since", "yesterday")
    assert when.code == 1
    assert "  /since: an RFC 3339 time with a zone is required" in when.err


def test_bad_input_is_refused_before_any_request(cli: Cli) -> None:
    """A --filter that is not JSON, or a --header without '=', is a usage error (exit 2)."""
    assert cli("subscribe", "--sink", "http://127.0.0.1:9/x", "--filter", "{").code == 2
    ran = cli("subscribe", "--sink", "http://127.0.0.1:9/x", "--header", "X-Team")
    assert ran.code == 2 and "'X-Team' is not NAME=VALUE" in ran.err


@pytest.mark.wired
@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--type", "im.incident.declare"],
        ["subscribe", "--sink", "http://127.0.0.1:9/x"],
        ["subscriptions"],
        ["deliveries", "sub_x"],
        ["replay", "sub_x", "--since", "1h"],
        ["dead-letters", "redrive", "--all"],
        ["principal", "add", "--name", "ci", "--role", "producer"],
        ["principal", "list"],
        ["principal", "revoke", "prn_x"],
    ],
)
def test_an_unreachable_gateway_is_one_line_not_a_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing listening at --url, each command says so in one line and exits 1."""
    url = f"http://127.0.0.1:{free_port()}"
    assert main([*argv, "--url", url, "--token", ADMIN_TOKEN], environ={}) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"incidents: cannot reach the gateway at {url}: ")
    assert len(err.splitlines()) == 1


def test_since_takes_an_age_or_passes_a_time_through() -> None:
    """`--since 90m` means ninety minutes ago; an RFC 3339 time is sent as written."""
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert since_time("90m", now) == (now - timedelta(minutes=90)).isoformat()
    assert since_time("2d", now) == "2024-04-29T12:00:00+00:00"
    assert since_time("2024-05-01T00:00:00Z", now) == "2024-05-01T00:00:00Z"
