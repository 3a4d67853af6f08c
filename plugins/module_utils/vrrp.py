# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""The load balancers' floating address (keepalived, VRRP): the checks of the inventory and of the
network before keepalived is configured, and the ARP frames of the probe that asks who answers for
the address. One implementation for the filters, the module and their unit tests."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from typing import Any

#: VRRP router ids (RFC 5798): 1 to 255.
ROUTER_ID_RANGE = range(1, 256)
#: Priorities a backup may have: 255 is the address owner's, 0 means "leaving now".
PRIORITY_RANGE = range(1, 255)
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6


class VrrpError(ValueError):
    """A value the checks cannot read (a malformed MAC address or frame)."""


def _interface_network(facts: Any) -> ipaddress.IPv4Interface | None:  # noqa: ANN401 - an interface's facts
    """The IPv4 interface (address with its network) of an interface's facts, or None."""
    if not isinstance(facts, Mapping):
        return None
    ipv4 = facts.get("ipv4")
    if not isinstance(ipv4, Mapping) or not ipv4.get("address") or not ipv4.get("netmask"):
        return None
    try:
        return ipaddress.IPv4Interface(f"{ipv4['address']}/{ipv4['netmask']}")
    except ValueError:
        return None


def _whole(value: Any, allowed: range) -> int | None:  # noqa: ANN401 - any inventory value
    """``value`` as an int within ``allowed``, else None (booleans and fractions are refused)."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number in allowed else None


def vrrp_problems(
    lb_hosts: Iterable[str],
    address: str,
    router_id: Any,  # noqa: ANN401 - any inventory value
    priorities: Mapping[str, Any],
    interfaces: Mapping[str, Any],
    host_addresses: Mapping[str, str],
) -> list[str]:
    """What is wrong with a floating address for ``lb_hosts`` (one sentence each, naming the fix).

    ``priorities`` maps each load balancer to its VRRP priority; ``interfaces`` maps each to the facts
    of the interface keepalived uses (``ansible_facts[<interface>]``: ``ipv4.address`` and
    ``ipv4.netmask``), or None when the host has no such interface. A host missing from both (outside
    a --limit) is not checked; ``host_addresses`` maps every
    inventory host to the address others reach it at. The address must be a unicast IPv4 address of
    the network every load balancer's interface is on, none of those hosts' own, and neither that
    network's address nor its broadcast address; the router id 1-255; the priorities 1-254, one per
    load balancer and all different (the highest takes the address first).
    """
    hosts = [str(h) for h in lb_hosts]
    problems: list[str] = []
    if len(hosts) < 2:
        problems.append(
            f"A floating address needs two or more lb hosts to move between (the lb group has {len(hosts)}): add one, "
            "or leave keepalived_address empty."
        )
    try:
        vip = ipaddress.IPv4Address(str(address).strip())
    except ValueError:
        return [
            *problems,
            f"keepalived_address {address!r} is not an IPv4 address: set it to a free address of the "
            "load balancers' network, such as 10.0.0.250.",
        ]
    if vip.is_loopback or vip.is_multicast or vip.is_unspecified or vip.is_link_local or vip.is_reserved:
        problems.append(
            f"keepalived_address {vip} is not a unicast host address: choose a free address of the "
            "load balancers' network."
        )
    for host in (h for h in hosts if h in interfaces):
        name = interfaces.get(host, {}).get("device", "") if isinstance(interfaces.get(host), Mapping) else ""
        network = _interface_network(interfaces.get(host))
        if network is None:
            problems.append(
                f"{host} has no IPv4 address on the interface keepalived_interface names: set keepalived_interface "
                "to the interface of the load balancers' shared network (or keepalived_interface on that host)."
            )
            continue
        if vip not in network.network:
            problems.append(
                f"keepalived_address {vip} is outside {host}'s network {network.network} ({name or 'its interface'}): "
                "the address can only move between hosts of one network; choose a free address in it."
            )
        elif vip in (network.network.network_address, network.network.broadcast_address):
            problems.append(
                f"keepalived_address {vip} is the network or broadcast address of {network.network}: choose a host "
                "address in it."
            )
    owners = sorted(h for h, a in host_addresses.items() if str(a).strip() == str(vip))
    if owners:
        problems.append(
            f"keepalived_address {vip} is the address of {', '.join(owners)}: choose an address no host has."
        )
    if _whole(router_id, ROUTER_ID_RANGE) is None:
        problems.append(
            f"keepalived_router_id is {router_id!r}: set a whole number from 1 to 255, unique on the "
            "network (no other VRRP router may use it)."
        )
    given = {host: _whole(priorities.get(host), PRIORITY_RANGE) for host in hosts if host in priorities}
    wrong = sorted(h for h, p in given.items() if p is None)
    if wrong:
        problems.append(
            f"keepalived_priority of {', '.join(wrong)} is not a whole number from 1 to 254 "
            f"({', '.join(f'{h}: {priorities.get(h)!r}' for h in wrong)}): set one per load balancer."
        )
    seen: dict[int, list[str]] = {}
    for host, priority in given.items():
        if priority is not None:
            seen.setdefault(priority, []).append(host)
    ties = [f"{', '.join(sorted(h))} ({p})" for p, h in sorted(seen.items()) if len(h) > 1]
    if ties:
        problems.append(
            f"keepalived_priority is the same on {'; '.join(ties)}: give each load balancer its own, so that the "
            "first to take the address is known."
        )
    return problems


def address_on_interface(ip_addr_output: str, address: str) -> bool:
    """Whether ``ip -4 -o addr show`` output lists ``address`` (with any prefix length)."""
    wanted = str(ipaddress.IPv4Address(str(address).strip()))
    for line in ip_addr_output.splitlines():
        fields = line.split()
        if "inet" in fields[:-1] and fields[fields.index("inet") + 1].split("/")[0] == wanted:
            return True
    return False


def mac_bytes(mac: str) -> bytes:
    """A MAC address written aa:bb:cc:dd:ee:ff as its six bytes."""
    parts = str(mac).strip().lower().replace("-", ":").split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError as exc:
        raise VrrpError(f"{mac!r} is not a MAC address") from exc
    if len(raw) != 6 or any(len(p) not in (1, 2) for p in parts):
        raise VrrpError(f"{mac!r} is not a MAC address")
    return raw


def mac_text(raw: bytes) -> str:
    """Six bytes as aa:bb:cc:dd:ee:ff."""
    return ":".join(f"{b:02x}" for b in raw)


def arp_probe_frame(source_mac: str, address: str) -> bytes:
    """An Ethernet frame with an ARP probe (RFC 5227: sender address 0.0.0.0) asking who has ``address``.

    A probe puts nothing into the neighbours' ARP caches, so asking for a free address leaves no trace.
    """
    mac = mac_bytes(source_mac)
    target = ipaddress.IPv4Address(address).packed
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, b"\0" * 4, b"\0" * 6, target)
    return BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP) + arp


def arp_reply_sender(frame: bytes, address: str) -> str | None:
    """The MAC address of the host a frame says holds ``address`` (an ARP reply for it), else None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    (htype, ptype, hlen, plen, op, sha, spa) = struct.unpack("!HHBBH6s4s", frame[14:32])
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    return mac_text(sha) if spa == ipaddress.IPv4Address(address).packed else None


def address_holder_problems(
    address: str, answered: Mapping[str, Iterable[str]], lb_macs: Mapping[str, str]
) -> list[str]:
    """Problems when a host other than the load balancers answers ARP for the floating address.

    ``answered`` maps each load balancer that probed to the MAC addresses that answered it;
    ``lb_macs`` maps each load balancer to its interface's MAC address. A load balancer that holds
    the address already (a re-run) is no problem; any other answer means the address is taken.
    """
    ours = {mac_text(mac_bytes(m)) for m in lb_macs.values() if m}
    others = sorted({mac_text(mac_bytes(m)) for macs in answered.values() for m in macs} - ours)
    if not others:
        return []
    return [
        f"keepalived_address {address} is in use on the network: {', '.join(others)} answered for it, and no load "
        "balancer has that MAC address. Choose a free address (keepalived would take it from that host)."
    ]
