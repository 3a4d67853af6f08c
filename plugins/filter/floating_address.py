# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filters that check the load balancers' floating address (keepalived) before anything changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils import vrrp


def _mapping(filter_name: str, what: str, value: Any) -> Mapping[str, Any]:  # noqa: ANN401 - any inventory value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{filter_name}: {what} must be a mapping of host names (got {type(value).__name__})")
    return value


def vrrp_problems(
    lb_hosts: Any,  # noqa: ANN401 - a filter's input
    address: Any,  # noqa: ANN401
    router_id: Any,  # noqa: ANN401
    priorities: Any,  # noqa: ANN401
    interfaces: Any,  # noqa: ANN401
    host_addresses: Any = None,  # noqa: ANN401
) -> list[str]:
    """What is wrong with the floating address, its router id and the priorities (vrrp_problems.yml)."""
    if isinstance(lb_hosts, (str, Mapping)) or not isinstance(lb_hosts, Iterable):
        raise AnsibleFilterError(f"vrrp_problems: expects a list of host names (got {lb_hosts!r:.80})")
    problems: list[str] = vrrp.vrrp_problems(
        [str(h) for h in lb_hosts],
        "" if address is None else str(address),
        router_id,
        _mapping("vrrp_problems", "the priorities", priorities),
        _mapping("vrrp_problems", "the interfaces", interfaces),
        {str(k): str(v) for k, v in _mapping("vrrp_problems", "the host addresses", host_addresses).items() if v},
    )
    return problems


def vrrp_address_holder_problems(
    answered: Any,  # noqa: ANN401 - a filter's input
    address: Any,  # noqa: ANN401
    lb_macs: Any,  # noqa: ANN401
) -> list[str]:
    """Problems when a host other than the load balancers answers for the address (vrrp_address_holder_problems.yml)."""
    replies = _mapping("vrrp_address_holder_problems", "the answers", answered)
    try:
        problems: list[str] = vrrp.address_holder_problems(
            str(address),
            {str(h): [str(m) for m in macs or []] for h, macs in replies.items()},
            {str(h): str(m) for h, m in _mapping("vrrp_address_holder_problems", "the MAC addresses", lb_macs).items()},
        )
    except vrrp.VrrpError as exc:
        raise AnsibleFilterError(f"vrrp_address_holder_problems: {exc}") from exc
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"vrrp_problems": vrrp_problems, "vrrp_address_holder_problems": vrrp_address_holder_problems}
