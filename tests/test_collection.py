"""The repository is an Ansible collection that builds cleanly and runs from a checkout."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_galaxy_metadata_names_the_collection_and_its_dependencies() -> None:
    meta = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (meta["namespace"], meta["name"]) == ("tutormax", "cluster")
    assert all(part.isdigit() for part in meta["version"].split(".")), meta["version"]
    assert len(meta["version"].split(".")) == 3
    assert {"community.postgresql", "community.general", "ansible.posix"} <= set(meta["dependencies"])
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"].startswith(">=2.")


def test_collection_archive_leaves_out_environments_caches_and_secrets(tmp_path: Path) -> None:
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (archive,) = tmp_path.glob("tutormax-cluster-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "roles/common/tasks/main.yml" in names
    assert "plugins/test/secret.py" in names
    forbidden = (
        ".venv/",
        ".cache/",
        ".git/",
        "collections/",
        "__pycache__",
        ".pytest_cache",
        "group_vars/all/secrets.yml",
    )
    leaked = [n for n in names if any(f in n + "/" for f in forbidden)]
    assert not leaked, leaked


def test_checkout_resolves_the_collection_by_its_fqcn() -> None:
    link = REPO / "collections" / "ansible_collections" / "tutormax" / "cluster"
    assert link.is_symlink()
    assert link.resolve() == REPO


def test_ansible_cfg_defaults_to_the_local_inventory_with_pipelining_and_timing() -> None:
    out = subprocess.run(
        ["ansible-config", "dump", "--only-changed"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    settings = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    host_list = next(v for k, v in settings.items() if k.startswith("DEFAULT_HOST_LIST("))
    assert host_list.rstrip("']").endswith("/inventories/local")
    assert "ansible.posix.profile_tasks" in next(v for k, v in settings.items() if k.startswith("CALLBACKS_ENABLED("))
    assert next(v for k, v in settings.items() if k.startswith("ANSIBLE_PIPELINING(")) == "True"
