#!/usr/bin/python
# Copyright: TutorMax SRE team
# Apache License 2.0 (see galaxy.yml)
"""arp_probe: which hosts on this host's network answer ARP for an address."""

from __future__ import annotations

DOCUMENTATION = r"""
module: arp_probe
short_description: Ask the network who answers for an IPv4 address (an ARP probe)
description:
  - Sends RFC 5227 ARP probes (sender address 0.0.0.0, so no neighbour's cache learns anything) for O(address) out
    of O(interface) and returns the MAC addresses that answered. An empty list means no host on the network claims
    the address.
  - The keepalived role's preflight uses it before a floating address is configured, since an address a host outside the
    load balancers answers for is taken.
  - Changes nothing. Needs root (a raw packet socket) and an Ethernet interface.
version_added: 0.4.0
author: TutorMax SRE team (@tutormax)
options:
  interface:
    description: The interface to probe out of.
    type: str
    required: true
  address:
    description: The IPv4 address asked for.
    type: str
    required: true
  probes:
    description: Probes sent, one every O(interval) seconds.
    type: int
    default: 3
  interval:
    description: Seconds between probes; answers are collected until one interval after the last.
    type: float
    default: 0.4
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Ask who answers for the floating address
  tutormax.cluster.arp_probe:
    interface: eth0
    address: 10.0.0.250
  register: probe
"""

RETURN = r"""
answered:
  description: MAC addresses (aa:bb:cc:dd:ee:ff) that answered for the address, each once.
  type: list
  elements: str
  returned: always
mac:
  description: The probing interface's own MAC address.
  type: str
  returned: always
local:
  description: Whether O(address) is on O(interface) itself (this host holds it; a host does not answer its own probe).
  type: bool
  returned: always
"""

import socket
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tutormax.cluster.plugins.module_utils import vrrp


def probe(interface: str, address: str, mac: str, probes: int, interval: float) -> list[str]:
    """Send the probes and collect the senders of the replies for ``address``."""
    frame = vrrp.arp_probe_frame(mac, address)
    answered: list[str] = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(vrrp.ETH_P_ARP)) as sock:
        sock.bind((interface, vrrp.ETH_P_ARP))
        sock.settimeout(0.05)
        for _probe in range(probes):
            sock.send(frame)
            until = time.monotonic() + interval
            while time.monotonic() < until:
                try:
                    data = sock.recv(2048)
                except TimeoutError:
                    continue
                sender = vrrp.arp_reply_sender(data, address)
                if sender and sender not in answered:
                    answered.append(sender)
    return answered


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "interface": {"type": "str", "required": True},
            "address": {"type": "str", "required": True},
            "probes": {"type": "int", "default": 3},
            "interval": {"type": "float", "default": 0.4},
        },
        supports_check_mode=True,
    )
    interface = module.params["interface"]
    mac_file = Path("/sys/class/net") / interface / "address"
    if "/" in interface or not mac_file.exists():
        module.fail_json(msg=f"interface {interface!r} does not exist on this host")
    mac = mac_file.read_text().strip()
    (rc, out, err) = module.run_command(["ip", "-4", "-o", "addr", "show", "dev", interface])
    if rc != 0:
        module.fail_json(msg=f"ip addr show dev {interface} failed: {err.strip()}")
    local = vrrp.address_on_interface(out, module.params["address"])
    try:
        answered = probe(
            interface,
            module.params["address"],
            mac,
            max(1, module.params["probes"]),
            max(0.05, module.params["interval"]),
        )
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"ARP probe for {module.params['address']} out of {interface} failed: {exc}")
    module.exit_json(changed=False, answered=answered, mac=mac, local=local)


if __name__ == "__main__":
    main()
