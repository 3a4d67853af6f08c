"""The load balancers' floating address as plugins, without a network (issue 20):
module_utils/vrrp.py (the inventory checks, the ARP probe's frames and the holder check) and the
filters of plugins/filter/floating_address.py that wrap it. The probe module itself runs on the nginx_lb
scenario's load balancers (molecule/nginx_lb/tests/test_vrrp.py)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from conftest import collection_import

vrrp = collection_import("plugins.module_utils.vrrp")
filters = collection_import("plugins.filter.floating_address")

LBS = ["lb1", "lb2"]
MAC1, MAC2, STRANGER = "02:42:ac:1e:14:02", "02:42:ac:1e:14:03", "02:42:ac:1e:14:09"


def iface(address: str, netmask: str = "255.255.255.0", device: str = "eth0") -> dict[str, Any]:
    return {"device": device, "ipv4": {"address": address, "netmask": netmask}, "macaddress": MAC1}


GOOD: dict[str, Any] = {
    "address": "10.0.0.250",
    "router_id": 51,
    "priorities": {"lb1": 150, "lb2": 100},
    "interfaces": {"lb1": iface("10.0.0.11"), "lb2": iface("10.0.0.12")},
    "host_addresses": {"lb1": "10.0.0.11", "lb2": "10.0.0.12", "api1": "10.0.0.21"},
}


def problems(hosts: list[str] | None = None, **change: Any) -> list[str]:  # noqa: ANN401 - inventory values
    args = {**GOOD, **change}
    result: list[str] = filters.vrrp_problems(
        LBS if hosts is None else hosts,
        args["address"],
        args["router_id"],
        args["priorities"],
        args["interfaces"],
        args["host_addresses"],
    )
    return result


def test_a_good_pair_has_no_problem() -> None:
    assert problems() == []
    assert problems(router_id="255", priorities={"lb1": "254", "lb2": 1}) == []


def test_one_load_balancer_cannot_share_an_address() -> None:
    (problem,) = problems(["lb1"], priorities={"lb1": 100})
    assert "two or more lb hosts" in problem
    assert "has 1" in problem


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("10.0.1.250", "outside lb1's network 10.0.0.0/24"),
        ("10.0.0.0", "network or broadcast address"),
        ("10.0.0.255", "network or broadcast address"),
        ("10.0.0.21", "the address of api1"),
        ("10.0.0.11", "the address of lb1"),
        ("not-an-address", "is not an IPv4 address"),
        ("10.0.0.250/24", "is not an IPv4 address"),
        ("127.0.0.5", "not a unicast host address"),
        ("224.0.0.18", "not a unicast host address"),
    ],
)
def test_an_address_that_cannot_float_is_refused(address: str, words: str) -> None:
    found = problems(address=address)
    assert any(words in p for p in found), found
    assert all("keepalived_address" in p for p in found), found


def test_each_load_balancer_must_be_on_the_address_network() -> None:
    found = problems(interfaces={"lb1": iface("10.0.0.11"), "lb2": iface("10.0.5.12")})
    assert found == [next(p for p in found if "lb2's network 10.0.5.0/24" in p)]
    (missing,) = problems(interfaces={"lb1": iface("10.0.0.11"), "lb2": None})
    assert missing.startswith("lb2 has no IPv4 address")
    assert "keepalived_interface" in missing
    (no_ipv4,) = problems(interfaces={"lb1": iface("10.0.0.11"), "lb2": {"device": "eth1"}})
    assert no_ipv4.startswith("lb2 has no IPv4 address")


def test_a_wider_network_takes_its_netmask_from_the_facts() -> None:
    wide = {"lb1": iface("10.0.0.11", "255.255.0.0"), "lb2": iface("10.0.7.12", "255.255.0.0")}
    assert problems(interfaces=wide, address="10.0.200.1") == []


@pytest.mark.parametrize("router_id", [0, 256, -1, "x", 1.5, True, None, ""])
def test_a_router_id_outside_1_to_255_is_refused(router_id: Any) -> None:  # noqa: ANN401 - any inventory value
    (problem,) = problems(router_id=router_id)
    assert problem.startswith("keepalived_router_id is")
    assert "1 to 255" in problem


def test_priorities_must_be_1_to_254_and_all_different() -> None:
    (bad,) = problems(priorities={"lb1": 255, "lb2": 0})
    assert "lb1, lb2" in bad
    assert "1 to 254" in bad
    (missing,) = problems(priorities={"lb1": 100, "lb2": None})
    assert "of lb2 is not" in missing
    # A host outside the run (--limit) has neither: it is not checked.
    assert problems(priorities={"lb1": 100}, interfaces={"lb1": iface("10.0.0.11")}) == []
    (tie,) = problems(priorities={"lb1": 100, "lb2": "100"})
    assert "the same on lb1, lb2 (100)" in tie


def test_every_problem_is_reported_at_once() -> None:
    found = problems(address="10.0.0.11", router_id=0, priorities={"lb1": 1, "lb2": 1})
    assert len(found) == 3, found


def test_the_filter_refuses_inputs_of_the_wrong_shape() -> None:
    with pytest.raises(AnsibleFilterError, match="list of host names"):
        filters.vrrp_problems("lb1", "10.0.0.250", 1, {}, {})
    with pytest.raises(AnsibleFilterError, match="priorities must be a mapping"):
        filters.vrrp_problems(LBS, "10.0.0.250", 1, [150, 100], {})


def test_the_probe_frame_is_an_rfc_5227_arp_probe() -> None:
    frame = vrrp.arp_probe_frame(MAC1.upper(), "10.0.0.250")
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == bytes.fromhex(MAC1.replace(":", ""))
    assert struct.unpack("!H", frame[12:14])[0] == 0x0806
    (htype, ptype, hlen, plen, op, sha, spa, tha, tpa) = struct.unpack("!HHBBH6s4s6s4s", frame[14:])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert sha == frame[6:12]
    assert spa == b"\0\0\0\0"
    assert tha == b"\0" * 6
    assert tpa == ipaddress.IPv4Address("10.0.0.250").packed


def reply(sender: str, address: str, op: int = 2, ethertype: int = 0x0806) -> bytes:
    sha = bytes.fromhex(sender.replace(":", ""))
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, ipaddress.IPv4Address(address).packed,
                      b"\0" * 6, b"\0" * 4)  # fmt: skip
    return b"\0" * 6 + sha + struct.pack("!H", ethertype) + arp + b"\0" * 18  # padded to 60 bytes


def test_a_reply_for_the_address_names_its_sender() -> None:
    assert vrrp.arp_reply_sender(reply(STRANGER, "10.0.0.250"), "10.0.0.250") == STRANGER
    assert vrrp.arp_reply_sender(reply(STRANGER, "10.0.0.251"), "10.0.0.250") is None  # another address
    assert vrrp.arp_reply_sender(reply(STRANGER, "10.0.0.250", op=1), "10.0.0.250") is None  # a request
    assert vrrp.arp_reply_sender(reply(STRANGER, "10.0.0.250", ethertype=0x0800), "10.0.0.250") is None
    assert vrrp.arp_reply_sender(b"\0" * 20, "10.0.0.250") is None


def test_an_answer_from_a_host_outside_the_pair_means_the_address_is_taken() -> None:
    macs = {"lb1": MAC1, "lb2": MAC2}
    assert filters.vrrp_address_holder_problems({"lb1": [], "lb2": []}, "10.0.0.250", macs) == []
    # A re-run: lb1 holds the address, lb2's probe hears lb1 (written in capitals by another tool).
    assert filters.vrrp_address_holder_problems({"lb1": [], "lb2": [MAC1.upper()]}, "10.0.0.250", macs) == []
    (taken,) = filters.vrrp_address_holder_problems({"lb1": [STRANGER], "lb2": [STRANGER, MAC1]}, "10.0.0.250", macs)
    assert STRANGER in taken
    assert "in use on the network" in taken
    assert MAC1 not in taken


def test_malformed_mac_addresses_are_refused() -> None:
    for bad in ["", "02:42:ac", "02:42:ac:1e:14:zz", "0242ac1e1402", "02:42:ac:1e:14:02:03", "002:42:ac:1e:14:02"]:
        with pytest.raises(vrrp.VrrpError):
            vrrp.mac_bytes(bad)
    with pytest.raises(AnsibleFilterError, match="is not a MAC address"):
        filters.vrrp_address_holder_problems({"lb1": ["nonsense"]}, "10.0.0.250", {"lb1": MAC1})


def test_the_address_is_found_among_the_interface_addresses() -> None:
    out = (
        "2: eth0    inet 172.30.20.2/24 brd 172.30.20.255 scope global eth0\\       valid_lft forever\n"
        "2: eth0    inet 172.30.20.250/24 scope global secondary eth0\\       valid_lft forever\n"
    )
    assert vrrp.address_on_interface(out, "172.30.20.250")
    assert vrrp.address_on_interface(out, " 172.30.20.2 ")
    assert not vrrp.address_on_interface(out, "172.30.20.25")  # a prefix of another address
    assert not vrrp.address_on_interface("", "172.30.20.250")
