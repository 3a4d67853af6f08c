# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""private_address: the address other hosts reach an inventory host at (one rule for every role)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils.hosts import private_address as address_of


def private_address(host: str, hostvars: Mapping[str, Any], fallback: str | None = None) -> str:
    """The host's ``tutormax_private_address`` when the inventory sets one, else its default IPv4
    address fact, else ``fallback``: by default its name (a host whose facts were not gathered is then
    resolved by name); '' where an address is required and its absence is checked."""
    try:
        variables = hostvars[host]
    except KeyError as exc:
        raise AnsibleFilterError(f"private_address: {host!r} is not an inventory host") from exc
    return str(address_of(variables, str(host) if fallback is None else str(fallback)))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"private_address": private_address}
