#!/usr/bin/python3
"""Test client the nginx_lb scenario runs inside its containers (standard library only).

Every command is bounded in count or time and prints one JSON document:
  get URL [-n N] [-H 'Name: value'] [--gzip]   N requests, one new connection each
  loop URL --seconds S [--stop-file F]         requests until S seconds have passed or F exists
  ws URL [--message M] [--connections K]       K WebSocket upgrades, one echo each
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time
from http.client import HTTPConnection, HTTPSConnection
from urllib.parse import urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def connect(url: str, timeout: float) -> tuple[HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl._create_unverified_context()  # noqa: S323 - the scenario's self-signed certificate
        conn: HTTPConnection = HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    else:
        conn = HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    return conn, parts.path or "/"


def request(url: str, headers: dict[str, str], timeout: float = 10.0) -> dict[str, object]:
    conn, path = connect(url, timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        body = gzip.decompress(raw) if resp.getheader("Content-Encoding") == "gzip" else raw
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        return {
            "status": resp.status,
            "host": data.get("host") if isinstance(data, dict) else None,
            "headers": {k.lower(): v for k, v in resp.getheaders()},
            "json": data,
            "wire_bytes": len(raw),
        }
    except OSError as exc:
        return {"status": 0, "host": None, "error": repr(exc)}
    finally:
        conn.close()


def tally(results: list[dict[str, object]]) -> dict[str, dict[str, int]]:
    statuses: dict[str, int] = {}
    hosts: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        if r.get("host"):
            hosts[str(r["host"])] = hosts.get(str(r["host"]), 0) + 1
    return {"statuses": statuses, "hosts": hosts}


def cmd_get(args: argparse.Namespace) -> dict[str, object]:
    headers = dict(h.split(": ", 1) for h in args.header)
    if args.gzip:
        headers["Accept-Encoding"] = "gzip"
    started = time.monotonic()
    results = [request(args.url, headers) for _ in range(args.n)]
    return {"count": len(results), "elapsed": time.monotonic() - started, **tally(results), "first": results[0]}


def cmd_loop(args: argparse.Namespace) -> dict[str, object]:
    deadline = time.monotonic() + min(args.seconds, 120)
    records = []
    while time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file)):
        r = request(args.url, {}, timeout=5.0)
        records.append({"t": time.time(), "status": r["status"], "host": r.get("host"), "error": r.get("error")})
        time.sleep(args.interval)
    return {"count": len(records), **tally(records), "records": records}


def ws_once(url: str, message: str) -> dict[str, object]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    stream = sock.makefile("rb")
    status_line = stream.readline().decode()
    headers = {}
    while (line := stream.readline().decode().strip()) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
    echo = None
    if status == 101:
        payload = message.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
        head = stream.read(2)
        echo = stream.read(head[1] & 0x7F).decode()
        sock.sendall(struct.pack("!BB", 0x88, 0x80) + mask)
    sock.close()
    return {"status": status, "accept_ok": headers.get("sec-websocket-accept") == expected, "echo": echo}


def cmd_ws(args: argparse.Namespace) -> dict[str, object]:
    results = [ws_once(args.url, args.message) for _ in range(args.connections)]
    return {"connections": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get")
    get.add_argument("url")
    get.add_argument("-n", type=int, default=1)
    get.add_argument("-H", "--header", action="append", default=[])
    get.add_argument("--gzip", action="store_true")
    loop = sub.add_parser("loop")
    loop.add_argument("url")
    loop.add_argument("--seconds", type=float, required=True)
    loop.add_argument("--interval", type=float, default=0.02)
    loop.add_argument("--stop-file")
    ws = sub.add_parser("ws")
    ws.add_argument("url")
    ws.add_argument("--message", default="hello")
    ws.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    result = {"get": cmd_get, "loop": cmd_loop, "ws": cmd_ws}[args.command](args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
