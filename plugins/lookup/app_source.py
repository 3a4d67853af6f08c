# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""app_source: where the collection keeps the TutorMax app's source, and its version."""

from __future__ import annotations

DOCUMENTATION = r"""
name: app_source
short_description: The TutorMax app's source shipped with the collection, or its version
version_added: 0.2.0
author: TutorMax SRE team (@tutormax)
description:
  - The collection carries the app it deploys in its C(app/) directory. With no term this returns that directory's
    path on the controller; with the term V(version), the version in C(app/src/tutormax/VERSION).
  - The roles default the release they deploy to it, so no role reaches into another directory of the collection.
options:
  _terms:
    description: Nothing for the directory, or V(version).
    required: false
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Show the app's source and version
  ansible.builtin.debug:
    msg: "{{ lookup('tutormax.cluster.app_source') }} holds {{ lookup('tutormax.cluster.app_source', 'version') }}"
"""

RETURN = r"""
_raw:
  description: The directory's path, or the version.
  type: list
  elements: str
"""

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

# plugins/lookup/app_source.py -> the collection root -> app/
APP_DIR = Path(__file__).resolve().parents[2] / "app"


def app_dir() -> Path:
    if not (APP_DIR / "pyproject.toml").exists():
        raise AnsibleLookupError(f"app_source: the app's source is missing from the collection ({APP_DIR})")
    return APP_DIR


def app_version() -> str:
    version = (app_dir() / "src" / "tutormax" / "VERSION").read_text().strip()
    if not version:
        raise AnsibleLookupError(f"app_source: {APP_DIR}/src/tutormax/VERSION is empty")
    return version


class LookupModule(LookupBase):  # type: ignore[misc]  # ansible-core has no type hints
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:  # noqa: ANN401
        if not terms:
            return [str(app_dir())]
        if terms == ["version"]:
            return [app_version()]
        raise AnsibleLookupError(f"app_source: the only term is 'version' (got {terms!r})")
