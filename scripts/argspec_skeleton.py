#!/usr/bin/env python3
"""Print a meta/argument_specs.yml skeleton for a role from its defaults/main.yml.

Each option takes its description from the comment above the default and its type from the
value; templated defaults are left out of `default:`. A starting point to edit by hand, not a
generator to re-run: tests/test_role_specs.py keeps the spec and the defaults in agreement.
Usage: scripts/argspec_skeleton.py ROLE_DIR "short description" [secret_var ...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


def kind(value: Any) -> str:  # noqa: ANN401 - YAML values
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return "raw"
    return "str"


def comments(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    block: list[str] = []
    for line in lines:
        if line.startswith("#"):
            block.append(line.lstrip("# ").strip())
        elif line and not line[0].isspace() and ":" in line and not line.startswith("---"):
            found[line.split(":", 1)[0]] = " ".join(block)
            block = []
        elif not line.strip():
            block = []
    return found


def main() -> None:
    role = Path(sys.argv[1])
    short = sys.argv[2]
    secrets = sys.argv[3:]
    text = (role / "defaults" / "main.yml").read_text()
    values = yaml.safe_load(text) or {}
    docs = comments(text.splitlines())
    options: dict[str, Any] = {}
    for name, value in values.items():
        option: dict[str, Any] = {"type": kind(value), "description": docs.get(name, "")}
        if option["type"] == "raw":
            option["type"] = "str"
        elif not (isinstance(value, (list, dict)) and "{{" in str(value)):
            option["default"] = value
        if option["type"] == "list":
            option["elements"] = "str"
        options[name] = option
    for name in secrets:
        options[name] = {"type": "str", "no_log": True, "description": "Secret; see docs/DEVELOPING.md."}
    spec = {"argument_specs": {"main": {"short_description": short, "options": options}}}
    sys.stdout.write("---\n" + yaml.safe_dump(spec, sort_keys=False, width=100))


if __name__ == "__main__":
    main()
