"""The monitoring role's Prometheus rules and Alertmanager inhibitions, without a Prometheus.

promtool (Debian's, fetched by scripts/promtool.sh without installing the service) checks the rule
file and runs its unit tests (tests/promtool/*.yml: series in, the alerts that fire out, their
labels and expanded annotations). The rest is read from the YAML: every alert carries a severity
and the three annotations the alert notifications show, every alert the inhibit rules name exists,
and every alert has a unit test where it fires and one where it does not.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

PROMTOOL = REPO / "scripts" / "promtool.sh"
RULES = REPO / "roles" / "monitoring" / "files" / "prometheus" / "rules" / "tutormax.yml"
INHIBIT_RULES = REPO / "roles" / "monitoring" / "files" / "alertmanager" / "inhibit_rules.yml"
TESTS = sorted((REPO / "tests" / "promtool").glob("*.yml"))
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook"}
#: An alertname matcher of an inhibit rule: alertname, operator, quoted value.
ALERTNAME_MATCHER = re.compile(r'^\s*alertname\s*(=~|!~|!=|=)\s*"([^"]*)"\s*$')


def load(path: Path) -> Any:  # noqa: ANN401 - parsed YAML
    return yaml.safe_load(path.read_text())


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


ALERTS = sorted({rule["alert"] for rule in alerting_rules()})


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROMTOOL), *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


def alert_cases() -> Iterator[tuple[Path, str, bool]]:
    """Every alert_rule_test case of the unit tests: its file, alertname, and whether alerts fire."""
    for path in TESTS:
        for test in load(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                yield path, case["alertname"], bool(case.get("exp_alerts"))


def test_promtool_accepts_the_rules() -> None:
    proc = promtool("check", "rules", str(RULES.relative_to(REPO)))
    assert proc.returncode == 0, f"promtool check rules failed:\n{proc.stdout}{proc.stderr}"
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    assert TESTS, "no promtool test file under tests/promtool"
    proc = promtool("test", "rules", *(str(path.relative_to(REPO)) for path in TESTS))
    assert proc.returncode == 0, f"promtool test rules failed:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("path", TESTS, ids=lambda path: path.name)
def test_unit_tests_load_the_rules_file(path: Path) -> None:
    """A test file tests the shipped rules (not a copy), at evaluation intervals of 10 or 15 s (the
    role's scrape and evaluation intervals: 10 s in the tests' design, 15 s by default)."""
    document = load(path)
    assert [(path.parent / name).resolve() for name in document["rule_files"]] == [RULES]
    assert document.get("evaluation_interval") in {"10s", "15s"}


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: f"{rule['alert']}-{rule['labels']['severity']}")
def test_every_alert_has_a_severity_and_the_annotations(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("TutorMax")
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert set(annotations) >= ANNOTATIONS, f"{rule['alert']} lacks {ANNOTATIONS - set(annotations)}"
    for name in ANNOTATIONS:
        assert annotations[name].strip(), f"{rule['alert']}: empty {name}"
    assert "\n" not in annotations["runbook"], f"{rule['alert']}: the runbook is one line"


def test_alert_names_are_unique_but_for_severity_levels() -> None:
    """An alert name appears once, or once per severity (a warning and a critical threshold)."""
    seen = [(rule["alert"], rule["labels"]["severity"]) for rule in alerting_rules()]
    assert len(seen) == len(set(seen))


def inhibit_rule_alertnames() -> list[str]:
    """Every alert name an inhibit rule names: plain values, and each alternative of a regex."""
    rules = load(INHIBIT_RULES)
    assert isinstance(rules, list)
    assert rules, "no inhibit rule"
    names: list[str] = []
    for rule in rules:
        assert set(rule) <= {"source_matchers", "target_matchers", "equal"}, rule
        for side in ("source_matchers", "target_matchers"):
            assert rule.get(side), f"inhibit rule without {side}: {rule}"
            for matcher in rule[side]:
                match = ALERTNAME_MATCHER.match(matcher)
                if match is None:
                    continue
                operator, value = match.groups()
                if operator in ("=~", "!~"):
                    assert re.fullmatch(r"[A-Za-z0-9]+(\|[A-Za-z0-9]+)*", value), f"not a list of names: {value}"
                    names.extend(value.split("|"))
                else:
                    names.append(value)
    return names


def test_inhibit_rules_name_existing_alerts() -> None:
    names = inhibit_rule_alertnames()
    assert names
    missing = sorted(set(names) - set(ALERTS))
    assert not missing, f"inhibit rules name alerts the rules do not define: {missing}"


def test_the_design_inhibitions_are_there() -> None:
    """A host that is down silences the rest of that host; the Celery no-worker alert silences the
    per-worker target-down alerts."""
    rules = load(INHIBIT_RULES)
    pairs = {(tuple(rule["source_matchers"]), tuple(rule["target_matchers"])): rule.get("equal", []) for rule in rules}
    assert pairs[(('alertname="TutorMaxHostDown"',), ('alertname!="TutorMaxHostDown"',))] == ["host"]
    assert (('alertname="TutorMaxCeleryNoWorker"',), ('alertname="TutorMaxTargetDown"', 'job="celery"')) in pairs


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_fires_in_a_unit_test_and_stays_quiet_in_another(alert: str) -> None:
    cases = [fires for _path, name, fires in alert_cases() if name == alert]
    assert True in cases, f"no promtool test case where {alert} fires"
    assert False in cases, f"no promtool test case where {alert} does not fire"


def test_unit_tests_name_only_existing_alerts() -> None:
    unknown = sorted({name for _path, name, _fires in alert_cases()} - set(ALERTS))
    assert not unknown, f"promtool tests of alerts the rules do not define: {unknown}"
