"""Reading ``policies/*.yaml``: validated against ``schemas/policy.json`` at start-up.

The one reader of policy files: ``load_policy_files`` gives the admission policy and the alert
rules together, and ``incidents policy check`` calls it as start-up does. Files are read in
name order and their defaults and rules concatenated, so ``00-base.yaml`` comes before
``50-team.yaml``; keys of the ``alerts`` sections merge, a later file's value winning. Any
problem stops start-up with the file, line and reason.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from incidents.model.schemas import check_schema_text
from incidents.policy.alert_rules import AlertRules, AlertRulesError
from incidents.policy.rules import Default, Match, Policy, Rule

SCHEMA_FILE = "policy.json"  # in the schemas directory
SUFFIXES = (".yaml", ".yml")


class PolicyError(ValueError):
    """A policy file cannot be used; the message starts with ``path:line:``."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


def _node_at(node: yaml.Node, path: Sequence[str | int]) -> yaml.Node:
    """The deepest YAML node along a JSON path, for its line number."""
    for step in path:
        if isinstance(node, yaml.MappingNode):
            found = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == step),
                None,
            )
            if found is None:
                return node
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                return node
            node = node.value[step]
        else:
            return node
    return node


def _line(root: yaml.Node, path: Sequence[str | int]) -> int:
    return _node_at(root, path).start_mark.line + 1


def _error_line(root: yaml.Node, error: ValidationError) -> int:
    """The line of the offending node; for an unexpected key, the key's own line."""
    path = list(error.absolute_path)
    node = _node_at(root, path)
    if error.validator == "additionalProperties" and isinstance(node, yaml.MappingNode):
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value not in allowed:
                return int(key.start_mark.line) + 1
    return int(node.start_mark.line) + 1


def _globs(raw: object) -> tuple[str, ...]:
    """One glob or a list of them (the policy schema allows only these)."""
    if isinstance(raw, str):
        return (raw,)
    return tuple(str(g) for g in raw) if isinstance(raw, list) else ()


def _match(raw: object) -> Match:
    raw = raw if isinstance(raw, dict) else {}
    data_globs = raw.get("data")
    data = tuple(
        (tuple(str(key).split(".")), _globs(value))
        for key, value in (data_globs.items() if isinstance(data_globs, dict) else ())
    )
    return Match(
        _globs(raw.get("type")), _globs(raw.get("source")), _globs(raw.get("tenant")), data
    )


def schema_validator(schemas_dir: Path) -> Draft202012Validator:
    """The compiled policy-file schema (``policy.json`` in the schemas directory)."""
    path = schemas_dir / SCHEMA_FILE
    try:
        text = path.read_text(encoding="utf-8")
        schema = json.loads(text)
        check_schema_text(text)
    except (OSError, ValueError, SchemaError) as exc:
        raise PolicyError(path, None, f"the policy schema cannot be used: {exc}") from exc
    return Draft202012Validator(schema)


Document = tuple[yaml.Node, Any]  # a file's YAML node tree (for line numbers) and its value


def read_file(path: Path) -> Document | None:
    """A policy file's YAML node tree (for line numbers) and value; None when it is empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(path, None, f"cannot be read: {exc}") from exc
    try:
        root, parsed = parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(path, line, f"not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(path, None, f"not valid YAML: {exc}") from exc
    if root is None or parsed is None:
        return None
    return root, copy.deepcopy(parsed)  # the remembered value stays as parsed


@functools.lru_cache(maxsize=64)
def parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """``text``'s YAML node tree and value. Remembered per text: parsing is most of what
    reading the shipped policy costs (every app, every worker context), and the answer depends
    on the text alone; a text that does not parse is parsed each time. The tree is only read;
    callers copy the value before they keep it."""
    return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


def parse_file(
    path: Path, validator: Draft202012Validator, document: Document | None = None
) -> Policy:
    """One policy file (read here unless ``document`` is given), validated; raises PolicyError
    naming the file and line."""
    document = document or read_file(path)
    if document is None:
        return Policy(files=(str(path),))
    root, raw = document
    error = best_match(validator.iter_errors(raw))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise PolicyError(path, _error_line(root, error), f"at {where}: {error.message}")
    defaults = []
    for i, item in enumerate(raw.get("defaults") or []):
        origin = f"{path}:{_line(root, ['defaults', i])}"
        defaults.append(
            Default(
                _match(item.get("match")),
                item.get("dataclass"),
                item.get("visibility"),
                item.get("name", f"defaults[{i}]"),
                origin,
            )
        )
    rules = []
    for i, item in enumerate(raw.get("rules") or []):
        require = item.get("require") or {}
        rules.append(
            Rule(
                item["name"],
                _match(item.get("match")),
                require.get("dataclass"),
                require.get("visibility"),
                item.get("reject"),
                f"{path}:{_line(root, ['rules', i])}",
            )
        )
    return Policy(tuple(defaults), tuple(rules), (str(path),))


def policy_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise PolicyError(directory, None, "the policies directory does not exist")
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


@dataclass(frozen=True)
class PolicyFiles:
    """Everything the policy files say: the admission policy and the alert rules."""

    policy: Policy
    alerts: AlertRules


class _AlertSections:
    """The ``alerts`` sections, merged key by key; remembers where each key was set."""

    def __init__(self) -> None:
        self.section: dict[str, Any] = {}
        self.origin: dict[str, tuple[Path, yaml.Node]] = {}

    def add(self, path: Path, document: Document | None) -> None:
        if document is None or not isinstance(document[1], dict):
            return
        root, raw = document
        alerts = raw.get("alerts")
        if alerts is None:
            return
        if not isinstance(alerts, dict):
            raise PolicyError(path, _line(root, ["alerts"]), "alerts: must be a mapping")
        for key, value in alerts.items():
            self.section[key] = value
            self.origin[key] = (path, root)

    def rules(self) -> AlertRules:
        try:
            return AlertRules.from_mapping(self.section)
        except AlertRulesError as exc:
            path, root = self.origin[exc.key[0]]
            line = _line(root, ["alerts", *exc.key])
            raise PolicyError(path, line, str(exc)) from exc


def load_policy_files(directory: Path, schemas_dir: Path) -> PolicyFiles:
    """Every policy file in ``directory``, validated and merged in name order."""
    validator = schema_validator(schemas_dir)
    defaults: list[Default] = []
    rules: list[Rule] = []
    files = []
    seen: dict[str, str] = {}
    alerts = _AlertSections()
    for path in policy_files(directory):
        document = read_file(path)
        policy = parse_file(path, validator, document)
        files.append(str(path))
        for rule in policy.rules:
            if rule.name in seen:
                line = int(rule.origin.rsplit(":", 1)[1])
                raise PolicyError(
                    path, line, f"rule name {rule.name!r} is already used at {seen[rule.name]}"
                )
            seen[rule.name] = rule.origin
        defaults.extend(policy.defaults)
        rules.extend(policy.rules)
        alerts.add(path, document)
    return PolicyFiles(Policy(tuple(defaults), tuple(rules), tuple(files)), alerts.rules())


def load_policies(directory: Path, schemas_dir: Path) -> Policy:
    """The admission policy of every policy file in ``directory`` (all of them validated)."""
    return load_policy_files(directory, schemas_dir).policy


def load_alert_rules(directory: Path) -> AlertRules:
    """Only the alert rules of the policy files in ``directory``; defaults when there is no
    such directory. Checks what the alert rules need, not the rest of each file."""
    alerts = _AlertSections()
    if directory.is_dir():
        for path in policy_files(directory):
            alerts.add(path, read_file(path))
    return alerts.rules()
