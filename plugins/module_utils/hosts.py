# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""The address other hosts reach an inventory host at: one rule for every role and filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def private_address(variables: Any, fallback: str = "") -> str:  # noqa: ANN401 - a host's variables (lazy in Ansible)
    """``tutormax_private_address`` when the inventory sets one, else the default IPv4 address fact,
    else ``fallback`` (the host's name where a name will do, '' where an address is required)."""
    try:
        given = variables.get("tutormax_private_address")
    except AttributeError:
        return fallback
    if given:
        return str(given)
    facts = variables.get("ansible_facts") or {}
    if not isinstance(facts, Mapping):
        return fallback
    address = (facts.get("default_ipv4") or {}).get("address")
    return str(address) if address else fallback
