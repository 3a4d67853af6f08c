# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""Filters of the nginx_lb role: the backends and what is wrong with them, worked out on the controller
before anything changes. The same code (module_utils/nginx.py) as the nginx_upstreams module's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.tutormax.cluster.plugins.module_utils import nginx
from ansible_collections.tutormax.cluster.plugins.module_utils.hosts import private_address


def nginx_lb_backends(
    given: Iterable[Mapping[str, Any]] | None,
    port: int = 8000,
    hosts: Iterable[str] | None = None,
    hostvars: Mapping[str, Any] | None = None,
    colour_var: str = "",
) -> list[dict[str, Any]]:
    """The backends (plugins/filter/nginx_lb_backends.yml documents it)."""
    try:
        port = int(port)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"nginx_lb_backends: port must be a number (got {port!r})") from exc
    given = list(given or [])
    if any(not isinstance(b, Mapping) for b in given):
        raise AnsibleFilterError(f"nginx_lb_backends: each backend must be a dict (got {given!r})")
    hosts = list(hosts or [])
    found = hostvars or {}
    # No fallback to the name: a backend without an address is a problem the preflight names.
    addresses = {} if given else {h: str(private_address(found[h])) if h in found else "" for h in hosts}
    colours = {h: str(found[h].get(colour_var) or "") for h in hosts if h in found} if colour_var and not given else {}
    return list(nginx.backend_list(given, port, hosts, addresses, colours))


def nginx_lb_backend_problems(
    backends: Iterable[Mapping[str, Any]],
    state: Mapping[str, Any] | None = None,
    group: str = "",
    names: Mapping[str, str] | None = None,
) -> list[str]:
    """What is wrong (plugins/filter/nginx_lb_backend_problems.yml documents it)."""
    if state is not None and not isinstance(state, Mapping):
        return [f"{(names or nginx.ROLE_NAMES).get('state', 'state')} must be a dict of backend name to state"]
    return list(nginx.problems(list(backends or []), state or {}, group, names or nginx.ROLE_NAMES))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "nginx_lb_backends": nginx_lb_backends,
            "nginx_lb_backend_problems": nginx_lb_backend_problems,
        }
