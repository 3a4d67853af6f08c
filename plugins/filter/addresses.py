# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""private_address: the address other hosts reach an inventory host at (one rule for every role)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def private_address(host: str, hostvars: Mapping[str, Any]) -> str:
    """The host's ``tutormax_private_address`` when the inventory sets one, else its default IPv4
    address fact, else its name (a host whose facts were not gathered: resolved by name)."""
    try:
        variables = hostvars[host]
    except KeyError as exc:
        raise AnsibleFilterError(f"private_address: {host!r} is not an inventory host") from exc
    given = variables.get("tutormax_private_address")
    if given:
        return str(given)
    facts = variables.get("ansible_facts") or {}
    address = (facts.get("default_ipv4") or {}).get("address")
    return str(address) if address else str(host)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"private_address": private_address}
