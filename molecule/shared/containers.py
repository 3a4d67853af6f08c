#!/usr/bin/env python3
"""Create or destroy a Molecule scenario's containers in one call, all hosts at once.

Molecule's Docker driver does this with one module call per host per step (image lookups,
Dockerfile checks, network checks repeated per host, async waits): 20-60 s per scenario on this
2-core machine, three times per scenario. The platforms here are plain `docker run`s of the
project's own pre-built image, so one script does the same in a few seconds.

Usage: containers.py create|destroy < platforms.json   (Molecule's `platforms` list, as JSON)
Only the platform keys the scenarios use are accepted; any other key stops the script with its
name, so a setting is never silently dropped.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

LABEL = "owner=molecule"
# Keys Molecule itself reads (groups, children) or that only say what the driver already assumes.
IGNORED = {"name", "groups", "children", "pre_build_image"}
SUPPORTED = {"image", "hostname", "command", "capabilities", "cgroupns_mode", "volumes", "tmpfs"}
SUPPORTED |= {"networks", "published_ports", "env", "sysctls", "labels", "docker_networks"}
# Keys of a docker_networks entry's ipam_config (Molecule's names) and the `docker network create` options.
IPAM_OPTIONS = {"subnet": "--subnet", "iprange": "--ip-range", "gateway": "--gateway"}
# Molecule's platform schema has no CPU weight (only `cpus`, a hard quota), so a scenario sets one
# with this label; it becomes `docker run --cpu-shares` (the container's share of a busy CPU
# relative to the others: 1024 is Docker's default).
CPU_SHARES_LABEL = "tutormax.cpu-shares"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the Docker CLI; on failure with ``check``, raise with its message."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)  # noqa: S603, S607
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ...: {done.stderr.strip() or done.stdout.strip()}")
    return done


def run_args(platform: dict[str, Any]) -> list[str]:
    """The `docker run` arguments of one platform."""
    unknown = set(platform) - IGNORED - SUPPORTED
    if unknown:
        raise ValueError(f"{platform['name']}: platform keys not supported by containers.py: {sorted(unknown)}")
    if not platform.get("pre_build_image"):
        raise ValueError(f"{platform['name']}: set pre_build_image: true (the project builds its image itself)")
    name = platform["name"]
    args = ["run", "--detach", "--name", name, "--hostname", platform.get("hostname", name)]
    args += ["--label", LABEL, "--log-driver", "json-file"]
    args += [f"--cap-add={cap}" for cap in platform.get("capabilities", [])]
    if platform.get("cgroupns_mode"):
        args.append(f"--cgroupns={platform['cgroupns_mode']}")
    args += [f"--volume={volume}" for volume in platform.get("volumes", [])]
    args += [f"--tmpfs={path}" for path in platform.get("tmpfs", [])]
    args += [f"--publish={port}" for port in platform.get("published_ports", [])]
    args += [f"--env={key}={value}" for key, value in platform.get("env", {}).items()]
    args += [f"--sysctl={key}={value}" for key, value in platform.get("sysctls", {}).items()]
    labels: dict[str, str] = platform.get("labels", {})
    args += [f"--label={key}={value}" for key, value in labels.items()]
    if CPU_SHARES_LABEL in labels:
        args.append(f"--cpu-shares={int(labels[CPU_SHARES_LABEL])}")
    networks = networks_of([platform])
    if networks:
        args.append(f"--network={networks[0]}")
        # A fixed address (on a network with a fixed subnet): the host keeps it across a restart.
        first = platform["networks"][0]
        if set(first) - {"name", "ipv4_address"}:
            raise ValueError(f"{name}: network settings not supported: {sorted(set(first) - {'name', 'ipv4_address'})}")
        if first.get("ipv4_address"):
            args.append(f"--ip={first['ipv4_address']}")
    args.append(platform["image"])
    args += shlex.split(platform["command"]) if platform.get("command") else []
    return args


def networks_of(platforms: list[dict[str, Any]]) -> list[str]:
    """The networks of ``platforms``, each once, in the order they are first named."""
    return list(dict.fromkeys(net["name"] for p in platforms for net in p.get("networks", [])))


def network_create_args(platforms: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Network name -> its `docker network create` options (a fixed subnet where a platform's
    docker_networks gives one: the scenario then knows a free address of it, such as a floating
    one). Two platforms that give one network different settings stop the script."""
    found: dict[str, list[str]] = {}
    for platform in platforms:
        for network in platform.get("docker_networks", []):
            unknown = {k for config in network.get("ipam_config", []) for k in config} - set(IPAM_OPTIONS)
            if set(network) - {"name", "ipam_config"} or unknown:
                raise ValueError(f"{platform['name']}: docker_networks settings not supported: {network}")
            options = [
                f"{IPAM_OPTIONS[key]}={value}"
                for config in network.get("ipam_config", [])
                for key, value in config.items()
            ]
            if found.setdefault(network["name"], options) != options:
                raise ValueError(f"network {network['name']} is set up two ways: {found[network['name']]}, {options}")
    return found


def existing(names: list[str]) -> dict[str, str]:
    """Name -> state of the containers among ``names`` that exist."""
    out = docker("ps", "--all", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
    found = dict(line.split(" ", 1) for line in out if " " in line)
    return {name: found[name] for name in names if name in found}


def create(platforms: list[dict[str, Any]]) -> list[str]:
    """Start every platform's container (an existing running one is kept, as Molecule does)."""
    # Every platform's arguments first: a setting the script cannot apply stops it before any change.
    argv = {p["name"]: run_args(p) for p in platforms}
    networks = {p["name"]: networks_of([p]) for p in platforms}
    settings = network_create_args(platforms)
    for network in networks_of(platforms):
        if docker("network", "inspect", network, check=False).returncode != 0:
            docker("network", "create", "--label", LABEL, *settings.get(network, []), network)
    states = existing(list(argv))
    todo = [name for name in argv if states.get(name) != "running"]

    def start(name: str) -> str:
        if name in states:  # stopped or half-created: start afresh
            docker("rm", "--force", "--volumes", name)
        docker(*argv[name])
        for extra in networks[name][1:]:  # `docker run` joins the first one
            docker("network", "connect", extra, name)
        # Until boot is over, systemd-tmpfiles may empty /tmp under Ansible's first module (seen: the
        # prepare step's apt task lost its payload). Wait for boot to end, "running" or "degraded".
        docker("exec", name, "timeout", "120", "systemctl", "is-system-running", "--wait", check=False)
        return name

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, todo))


def destroy(platforms: list[dict[str, Any]]) -> list[str]:
    """Remove every platform's container with its anonymous volumes, then the networks."""
    gone = list(existing([p["name"] for p in platforms]))
    with ThreadPoolExecutor(max_workers=8) as pool:  # `docker rm a b c` removes one after another
        list(pool.map(lambda name: docker("rm", "--force", "--volumes", name), gone))
    for network in networks_of(platforms):
        if docker("network", "inspect", network, check=False).returncode == 0:
            left = docker("network", "rm", network, check=False)
            if left.returncode != 0:  # still used by a container of something else: leave it
                print(f"network {network} kept: {left.stderr.strip()}", file=sys.stderr)
    return gone


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in {"create", "destroy"}:
        print(__doc__, file=sys.stderr)
        return 2
    platforms: list[dict[str, Any]] = json.load(sys.stdin)
    try:
        done = create(platforms) if argv[1] == "create" else destroy(platforms)
    except (RuntimeError, ValueError) as err:
        print(f"containers.py {argv[1]}: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"changed": bool(done), argv[1] + "d": done}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
