"""Every role documents its inputs in meta/argument_specs.yml, and the spec agrees with the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


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
    prefix = {"nginx_lb": "nginx_lb_"}.get(role, f"{role}_")
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
