"""deploy/: the Grafana dashboard and the Prometheus alerting rules query only what a real
/metrics exposes, and promtool accepts the rules (and their unit tests pass)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.delivery_support import ROOT, Receiver, Workers, publish, subscribe
from tests.support import event

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "incidents-dashboard.json"
RULES = DEPLOY / "prometheus" / "incidents-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "incidents-rules.test.yml"
METRIC = re.compile(r"\bincidents_[a-z_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"\b([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def dashboard_queries() -> list[str]:
    board = dashboard()
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    return queries


def rule_queries() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [str(r["expr"]) for g in rules["groups"] for r in g["rules"]]


def exposition(text: str) -> tuple[set[str], set[str]]:
    """The sample names and the label names a /metrics answer holds."""
    names: set[str] = set()
    labels: set[str] = {"instance", "job", "le"}  # added by Prometheus; le by histograms
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        names.add(name.split(" ")[0])
        if rest:
            labels.update(re.findall(r'([a-z_]+)="', rest.rsplit("}", 1)[0]))
    return names, labels


def test_the_dashboard_and_rules_query_only_what_metrics_exposes(
    client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """After a delivery, every metric and label the dashboard and the alerting rules query is
    in the gateway's real /metrics answer."""
    subscribe(client, rx, "/seen")
    publish(client, event())
    workers.run_until(lambda: bool(rx.at("/seen")))
    names, labels = exposition(client.get("/metrics").text)
    queries = dashboard_queries() + rule_queries()
    used = {m for q in queries for m in METRIC.findall(q)}
    assert used, "no query names a metric"
    assert sorted(used - names) == []
    grouped = {
        label.strip() for q in queries for g in GROUPING.findall(q) for label in g.split(",")
    }
    matched = {m for q in queries for m in MATCHER.findall(q)}
    assert sorted((grouped | matched) - labels - {""}) == []


def test_every_panel_reads_the_chosen_prometheus_and_fits_the_grid() -> None:
    """Panels have unique ids, query the dashboard's datasource variable, and fit 24 columns."""
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "subscription"} <= names
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is missing (Debian package prometheus; scripts/ci-extras installs it)"
        )
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.wired
@pytest.mark.parametrize("check", ["check", "test"])
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(check: str) -> None:
    """`promtool check rules` accepts the rules; `promtool test rules` sees each alert fire
    (a growing backlog, dead letters, a disabled subscription, a stopped worker, no worker,
    Redis unreachable) and stay quiet when it should."""
    target: Path = RULES if check == "check" else RULE_TESTS
    done = promtool(check, "rules", str(target))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
