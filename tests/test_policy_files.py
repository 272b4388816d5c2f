"""Policy files: validated at start-up with path, line and reason; `incidents policy check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidents.app import create_app
from incidents.cli.main import main
from incidents.model.severity import Severity
from incidents.policy.files import (
    PolicyError,
    load_policies,
    load_policy_files,
    parse_yaml,
    read_file,
)
from incidents.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_the_shipped_policy_is_valid_and_names_its_rules() -> None:
    """policies/default.yaml loads, with the security and alert rules it documents."""
    policy = load_policies(ROOT / "policies", SCHEMAS)
    names = [r.name for r in policy.rules]
    assert {"security-incidents", "alerts-never-public"} <= set(names)
    assert all(r.origin.startswith(str(ROOT / "policies" / "default.yaml")) for r in policy.rules)


def test_files_are_merged_in_name_order(tmp_path: Path) -> None:
    """Rules from 00-*.yaml come before those from 50-*.yaml; .yml counts, other files not."""
    write(tmp_path, "50-team.yml", "rules:\n  - name: b\n    require: {dataclass: confidential}\n")
    write(tmp_path, "00-base.yaml", "rules:\n  - name: a\n    reject: nope\n")
    write(tmp_path, "README.md", "not a policy")
    policy = load_policies(tmp_path, SCHEMAS)
    assert [r.name for r in policy.rules] == ["a", "b"]
    assert policy.rules[1].origin == f"{tmp_path / '50-team.yml'}:2"


def test_an_empty_directory_means_internal_defaults(tmp_path: Path) -> None:
    """With no policy files, events without labels are internal and internal."""
    policy = load_policies(tmp_path, SCHEMAS)
    assert policy.default_labels("im.alert.trigger", "/x", "t", {}) == ("internal", "internal")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("rules:\n  - name: ok\n    reject: x\n  - name: a: b\n", 4, "not valid YAML"),
        ("version: 1\nrulez: []\n", 2, "'rulez' was unexpected"),
        ("defaults:\n  - match: {}\n    dataclass: secret\n", 3, "'secret' is not one of"),
        ("rules:\n  - match: {type: x}\n    reject: nope\n", 2, "'name' is a required property"),
        (
            "rules:\n  - name: both\n    reject: nope\n    require: {visibility: internal}\n",
            2,
            "is valid under each of",
        ),
        ("rules:\n  - name: r\n    match:\n      typ: im.*\n    reject: nope\n", 4, "'typ'"),
        ("rules:\n  - name: r\n    require: {}\n", 3, "should be non-empty"),
    ],
)
def test_invalid_file_is_reported_with_path_line_and_reason(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    """Each kind of mistake names the file, the line it is on and what is wrong."""
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path, SCHEMAS)
    assert caught.value.path == str(path)
    assert caught.value.line == line, str(caught.value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_a_rule_name_used_twice_is_refused(tmp_path: Path) -> None:
    """Rule names are unique across files, so the delivery log and 403s are unambiguous."""
    write(tmp_path, "a.yaml", "rules:\n  - name: same\n    reject: x\n")
    write(tmp_path, "b.yaml", "\nrules:\n  - name: same\n    reject: y\n")
    with pytest.raises(PolicyError, match=r"b\.yaml:3: rule name 'same' is already used"):
        load_policies(tmp_path, SCHEMAS)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A policies directory that does not exist is an error, not an empty policy."""
    with pytest.raises(PolicyError, match="does not exist"):
        load_policies(tmp_path / "nope", SCHEMAS)


def test_an_invalid_file_stops_start_up(settings: Settings, tmp_path: Path) -> None:
    """create_app refuses to build an app when a policy file is invalid."""
    path = write(tmp_path / "p", "x.yaml", "defaults:\n  - visibility: everyone\n")
    with pytest.raises(PolicyError, match=rf"{path}:2: "):
        create_app(settings.replace(policies_dir=tmp_path / "p"))


def test_policy_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`incidents policy check` exits 0 for valid files and 1 with path:line for a bad one."""
    env = {"INCIDENTS_SCHEMAS_DIR": str(SCHEMAS)}
    assert main(["policy", "check", "--policies-dir", str(ROOT / "policies")], environ=env) == 0
    out = capsys.readouterr().out
    assert "alerts-never-public" in out
    assert "alerts: declare an incident at SEV1 or worse" in out
    bad = write(tmp_path, "bad.yaml", "rules:\n  - name: Bad Name\n    reject: x\n")
    assert main(["policy", "check", "--policies-dir", str(tmp_path)], environ=env) == 1
    assert f"{bad}:2:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("alerts:\n  declare_incident_at: SEV9\n", 2, "alerts.declare_incident_at"),
        ("version: 1\nalerts:\n  default_severity: loud\n", 3, "alerts.default_severity"),
        ("alerts:\n  severity_map:\n    disaster: SEV0\n", 3, "alerts.severity_map.disaster"),
        ("alerts:\n  grafana_signing:\n    prod: {}\n", 3, "alerts.grafana_signing.prod"),
        (
            "alerts:\n  grafana_signing:\n    prod:\n      secret: s\n      max_age: soon\n",
            5,
            "alerts.grafana_signing.prod.max_age",
        ),
    ],
)
def test_invalid_alert_rules_are_reported_with_path_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    """A bad alerts section is refused like any other policy mistake, naming the field."""
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path, SCHEMAS)
    assert str(caught.value).startswith(f"{path}:{line}: {field}: "), str(caught.value)


def test_alert_rules_merge_across_files_in_name_order(tmp_path: Path) -> None:
    """Each alerts key takes the value of the last file (by name) that sets it."""
    write(tmp_path, "00-base.yaml", "alerts:\n  declare_incident_at: SEV2\n")
    write(tmp_path, "50-team.yaml", "alerts:\n  declare_incident_at: never\n")
    write(tmp_path, "60-more.yaml", "alerts:\n  default_severity: SEV4\n")
    alerts = load_policy_files(tmp_path, SCHEMAS).alerts
    assert alerts.declare_incident_at is None
    assert alerts.default_severity is Severity.SEV4


def test_invalid_alert_rules_stop_start_up(settings: Settings, tmp_path: Path) -> None:
    """create_app refuses to build an app whose alert rules name an unknown severity."""
    path = write(tmp_path / "p", "x.yaml", "alerts:\n  declare_incident_at: SEV9\n")
    with pytest.raises(PolicyError, match=rf"{path}:2: alerts\.declare_incident_at: 'SEV9'"):
        create_app(settings.replace(policies_dir=tmp_path / "p"))


def test_policy_check_refuses_invalid_alert_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`incidents policy check` exits 1 for a bad alerts section, naming file, line and field."""
    env = {"INCIDENTS_SCHEMAS_DIR": str(SCHEMAS)}
    bad = write(tmp_path, "bad.yaml", "alerts:\n  declare_incident_at: SEV9\n")
    assert main(["policy", "check", "--policies-dir", str(tmp_path)], environ=env) == 1
    assert f"{bad}:2: alerts.declare_incident_at: 'SEV9' is not a severity" in (
        capsys.readouterr().err
    )


def test_a_file_read_again_is_parsed_once_and_each_reader_gets_its_own_value(
    tmp_path: Path,
) -> None:
    """Reading the same text twice parses it once; what one reader does to its value does not
    reach the next, and a file changed since is read as it now is, line numbers included."""
    path = write(tmp_path, "00-base.yaml", "rules:\n  - name: a\n    reject: nope\n")
    first = read_file(path)
    before = parse_yaml.cache_info()
    second = read_file(path)
    assert parse_yaml.cache_info().hits == before.hits + 1
    assert first is not None and second is not None and first[1] == second[1]
    first[1]["rules"].clear()
    again = read_file(path)
    assert again is not None and again[1]["rules"] == [{"name": "a", "reject": "nope"}]
    twice = "rules:\n  - name: a\n    reject: nope\n  - name: a\n    reject: again\n"
    write(tmp_path, "00-base.yaml", twice)
    with pytest.raises(PolicyError, match=r"00-base\.yaml:4: rule name 'a' is already used"):
        load_policies(tmp_path, SCHEMAS)
