"""Shared helpers for the collection's unit tests."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


class JsonHandler(BaseHTTPRequestHandler):
    """Base of the tests' stand-in HTTP servers (an API, a load balancer): JSON answers, no log."""

    instance_id = ""

    def send_json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.instance_id:
            self.send_header("X-Instance-Id", self.instance_id)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on a free loopback port in a thread; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def load_module(name: str, path: Path) -> ModuleType:
    """A script of the repository (a probe shipped to hosts, a benchmark) as a module, once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def collection_import(name: str) -> ModuleType:
    """A Python file of the collection by its dotted path under the collection, such as
    ``plugins.module_utils.nginx``, imported the way Ansible imports it
    (``ansible_collections.tutormax.cluster.<name>``: collections/ links to the checkout)."""
    collections = str(REPO / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    return importlib.import_module(f"ansible_collections.tutormax.cluster.{name}")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def run_playbook(
    tmp_path: Path,
    inventory: dict[str, Any],
    play: list[dict[str, Any]] | Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the checkout (its ansible.cfg resolves tutormax.cluster) on an inventory
    written to ``tmp_path``, with ``args``; ``play`` is a playbook file or the plays to write beside it."""
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    if isinstance(play, Path):
        playbook = play
    else:
        playbook = tmp_path / "play.yml"
        playbook.write_text(yaml.safe_dump(play))
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), *args, str(playbook)],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_task(
    tmp_path: Path, task: dict[str, Any], *flags: str, environment: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One task on localhost (``connection: local``, this Python) by ansible-playbook from the checkout,
    with ``environment`` for the task; returns the run and the task's result (the JSON callback's)."""
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "environment": environment or {},
             "tasks": [{"name": "the task", **task}]}]  # fmt: skip
    playbook = tmp_path / "task.json"
    playbook.write_text(json.dumps(play))
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(playbook), *flags],
        cwd=REPO,
        env={
            **os.environ,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # The JSON document comes first; ansible.cfg's timing callbacks print after it.
    document = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{\n") :])[0]
    return proc, document["plays"][0]["tasks"][0]["hosts"]["localhost"]
