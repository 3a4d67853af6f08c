# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filters on TutorMax releases, sharing the hosts' code (module_utils/release.py)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils import release


def staged_name(live: str) -> str:
    """Name of the file staged for ``live`` in the staging directory (release_switch reads it back)."""
    try:
        return str(release.staged_name(str(live)))
    except ValueError as exc:
        raise AnsibleFilterError(f"staged_name: {exc}") from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"staged_name": staged_name}
