"""Every role documents its inputs in meta/argument_specs.yml, and the spec agrees with the defaults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
# Every role: those with tasks, and tutormax (the shared values: defaults only).
ROLES = sorted(
    p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").exists() or (p / "defaults").is_dir()
)
PREFIXES = {role: {"nginx_lb": "nginx_lb_"}.get(role, f"{role}_") for role in ROLES}
JINJA = re.compile(r"{{.*?}}|{%.*?%}", re.S)


def load(path: Path) -> Any:  # noqa: ANN401 - YAML is untyped
    return yaml.safe_load(path.read_text()) or {}


def spec_options(role: str) -> dict[str, Any]:
    spec = load(REPO / "roles" / role / "meta" / "argument_specs.yml")
    return dict(spec["argument_specs"]["main"].get("options", {}))


def defaults(role: str) -> dict[str, Any]:
    path = REPO / "roles" / role / "defaults" / "main.yml"
    return dict(load(path)) if path.exists() else {}


def is_templated(value: object) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(is_templated(v) for v in value)
    if isinstance(value, dict):
        return any(is_templated(v) for v in value.values())
    return False


def test_there_are_roles() -> None:
    assert "common" in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_the_argument_spec(role: str) -> None:
    missing = sorted(set(defaults(role)) - set(spec_options(role)))
    assert not missing, f"{role}: defaults without an argument spec entry: {missing}"


@pytest.mark.parametrize("role", ROLES)
def test_every_argument_spec_option_is_a_default_or_required(role: str) -> None:
    # Secrets (no_log in the spec) have no default on purpose: the role's preflight refuses them
    # when missing or placeholders, with a message that names the variable.
    options = spec_options(role)
    stray = sorted(
        k for k, v in options.items() if k not in defaults(role) and not v.get("required") and not v.get("no_log")
    )
    assert not stray, f"{role}: optional spec entries with no default in defaults/main.yml: {stray}"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_equal_role_defaults(role: str) -> None:
    options = spec_options(role)
    mismatched = []
    for name, value in defaults(role).items():
        spec = options.get(name, {})
        if "default" in spec and not is_templated(value) and spec["default"] != value:
            mismatched.append(f"{name}: spec {spec['default']!r} != defaults {value!r}")
    assert not mismatched, f"{role}: " + "; ".join(mismatched)


@pytest.mark.parametrize("role", ROLES)
def test_variables_carry_the_role_prefix(role: str) -> None:
    prefix = PREFIXES[role]
    wrong = sorted(k for k in defaults(role) if not k.startswith(prefix))
    assert not wrong, f"{role}: variables without the {prefix} prefix: {wrong}"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_comment(role: str) -> None:
    lines = (REPO / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        if line and not line[0].isspace() and not line.startswith(("#", "---")) and ":" in line:
            above = lines[i - 1] if i else ""
            if not above.startswith("#"):
                undocumented.append(line.split(":", 1)[0])
    assert not undocumented, f"{role}: defaults without a comment above them: {undocumented}"


@pytest.mark.parametrize("role", ROLES)
def test_role_has_a_readme(role: str) -> None:
    readme = REPO / "roles" / role / "README.md"
    assert readme.exists(), f"{role}: README.md missing"
    text = readme.read_text()
    missing = [k for k in defaults(role) if k not in text]
    assert not missing, f"{role}: README does not mention {missing}"


def role_files(role: str) -> list[Path]:
    return sorted(p for p in (REPO / "roles" / role).rglob("*") if p.suffix in (".yml", ".j2") and p.is_file())


@pytest.mark.parametrize("role", [r for r in ROLES if r != "tutormax"])
def test_no_role_reads_another_roles_variables(role: str) -> None:
    """A role reads its own variables, the shared tutormax_* values (role tutormax), groups and facts;
    never another role's variables (in its templates, defaults, vars or tasks). Passing a value into a
    role it includes is a YAML key, not a read, and is allowed."""
    others = [PREFIXES[r] for r in ROLES if r not in (role, "tutormax")]
    pattern = re.compile(r"(?<![\w.])(?:" + "|".join(map(re.escape, others)) + r")[a-z0-9_]+")
    groups = {"redis_master", "redis_replica", "redis_sentinel", "celery_worker", "celery_beat"}
    reads = [
        f"{path.relative_to(REPO)}: {name}"
        for path in role_files(role)
        for expression in JINJA.findall(path.read_text())
        for name in pattern.findall(expression)
        if name not in groups
    ]
    assert not reads, f"{role} reads other roles' variables: {reads}"


@pytest.mark.parametrize("role", ROLES)
def test_no_role_reaches_into_the_collection_outside_its_directory(role: str) -> None:
    """The app's source and version come from the lookup tutormax.cluster.app_source."""
    escapes = [str(p.relative_to(REPO)) for p in role_files(role) if "/../../" in p.read_text()]
    assert not escapes, f"{role} reaches outside its directory: {escapes}"
