#!/usr/bin/python3
"""Stand-in for the TutorMax API behind the load balancer in the nginx_lb scenario.

Standard library only (the test hosts have no pip). Answers like the API would for the LB's
purposes: /health, /api/* (JSON naming this host, large enough for gzip), /metrics (which the LB
must not expose), and a WebSocket echo on /ws (RFC 6455 handshake and frames, ~50 lines).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = socket.gethostname()
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the LB's upstream keepalive is exercised
    server_version = "tutormax-standin"

    def log_message(self, format: str, *args: object) -> None:
        pass  # the LB's access log is what the scenario reads

    def send_json(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def describe(self) -> dict[str, object]:
        return {
            "host": HOST,
            "method": self.command,
            "path": self.path,
            "x_real_ip": self.headers.get("X-Real-IP"),
            "x_forwarded_for": self.headers.get("X-Forwarded-For"),
            "x_forwarded_proto": self.headers.get("X-Forwarded-Proto"),
            # Repetitive filler so the JSON is worth compressing (the LB gzips JSON over 256 bytes).
            "items": [{"id": i, "name": f"item-{i}", "status": "available"} for i in range(20)],
        }

    def do_GET(self) -> None:
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
        elif self.path == "/health":
            self.send_json(200, {"status": "ok", "host": HOST})
        elif self.path == "/metrics":
            self.send_json(200, {"metrics": "internal", "host": HOST})
        elif self.path.startswith("/api/"):
            self.send_json(200, self.describe())
        else:
            self.send_json(404, {"detail": "not found", "host": HOST})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_json(200 if self.path.startswith("/api/") else 404, self.describe())

    def websocket(self) -> None:
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            opcode, payload = read_frame(self.rfile)
            if opcode is None or opcode == 0x8:
                self.wfile.write(frame(0x8, b""))
                return
            if opcode == 0x9:
                self.wfile.write(frame(0xA, payload))
            elif opcode in (0x1, 0x2):
                self.wfile.write(frame(0x1, f"{HOST}:".encode() + payload))
            self.wfile.flush()


def read_frame(stream) -> tuple[int | None, bytes]:  # noqa: ANN001 - a socket file
    head = stream.read(2)
    if len(head) < 2:
        return None, b""
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", stream.read(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", stream.read(8))
    mask = stream.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = stream.read(length)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def frame(opcode: int, payload: bytes) -> bytes:
    if len(payload) < 126:
        head = struct.pack("!BB", 0x80 | opcode, len(payload))
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 126, len(payload))
    return head + payload


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()  # noqa: S104 - behind the LB
