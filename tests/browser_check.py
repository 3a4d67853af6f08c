"""The monitoring dashboard in a real browser: the system's headless Chromium loads the page, runs its
JavaScript, and hands back the DOM and a screenshot; ``check_dashboard`` and ``check_png`` say what is
wrong with them.

How the browser waits: one Chromium run with ``--virtual-time-budget``. Virtual time stands still while
a network request is pending, so every fetch() of a refresh round completes, while the page's timers
run on a fast clock; after the budget Chromium writes the DOM (``--dump-dom``) and the screenshot of the
same moment. A budget below the page's 15 s refresh interval means exactly one round ran. The run
itself is bounded by a real timeout (the process group is killed when it expires).

Library: ``render``, ``parse_dashboard``, ``check_dashboard``, ``read_png``, ``check_png`` (``png_problems``).
CLI: ``python tests/browser_check.py URL [--screenshot PATH]`` prints the problems, exits 1 if any.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

# Every panel of roles/monitoring/files/dashboard: the top strip, then the charts.
PANELS: tuple[str, ...] = (
    "health",
    "alerts",
    "api-request-rate",
    "api-latency-p99",
    "api-errors",
    "pg-connections",
    "pg-replication-lag",
    "pg-slow-queries",
    "redis-memory",
    "redis-hit-rate",
    "redis-clients",
    "celery-queue-depth",
    "celery-workers",
    "celery-tasks",
    "host-cpu",
    "host-memory",
)
WINDOW = (1400, 2400)
# Virtual milliseconds the page runs for: well past the first round, short of the 15 s refresh.
BUDGET_MS = 8000
TIMEOUT_S = 60.0
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium is missing, failed, or ran out of time."""


def find_chromium() -> str:
    """The browser: $CHROMIUM if set, else the first of CHROMIUM_NAMES on PATH."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError(
        f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}): install the chromium package "
        "(scripts/ensure-host-packages.sh) or set CHROMIUM"
    )


def chromium_args(
    url: str, profile: Path, screenshot: Path | None, window: tuple[int, int], budget_ms: int
) -> list[str]:
    """The flags of one run: headless, no sandbox (containers, root), a throwaway profile, no
    background traffic, virtual time for the page, then the DOM on stdout and the screenshot."""
    args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
        f"--window-size={window[0]},{window[1]}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
    ]
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    return [*args, url]


@dataclass(frozen=True)
class Render:
    """One page load: the DOM after the page's JavaScript ran, and the screenshot if one was asked for."""

    dom: str
    screenshot: Path | None
    seconds: float
    stderr: str


def render(
    url: str,
    screenshot: Path | None = None,
    *,
    window: tuple[int, int] = WINDOW,
    budget_ms: int = BUDGET_MS,
    timeout: float = TIMEOUT_S,
    chromium: str | None = None,
) -> Render:
    """Load ``url`` in headless Chromium (one run, see the module's doc) and return its DOM, with a
    ``window``-sized screenshot written to ``screenshot`` when given."""
    binary = chromium or find_chromium()
    if screenshot is not None:
        screenshot = screenshot.resolve()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="browser-check-") as tmp:
        home = Path(tmp)
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
        }
        argv = [binary, *chromium_args(url, home / "profile", screenshot, window, budget_ms)]
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        try:
            dom, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Chromium and its helpers (renderer, GPU, zygote) share the run's new session.
            os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate()
            raise BrowserError(f"chromium did not finish within {timeout:g} s: {tail(stderr)}") from None
        seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise BrowserError(f"chromium exited {proc.returncode}: {tail(stderr)}")
    if not dom.strip():
        raise BrowserError(f"chromium printed no DOM: {tail(stderr)}")
    if screenshot is not None and not screenshot.is_file():
        raise BrowserError(f"chromium wrote no screenshot to {screenshot}: {tail(stderr)}")
    return Render(dom=dom, screenshot=screenshot, seconds=seconds, stderr=stderr)


def tail(text: str, lines: int = 6) -> str:
    """The last lines of Chromium's stderr, without its D-Bus complaints (no session bus in a
    container) and the Debian launcher's shell warnings."""
    kept = [line for line in text.strip().splitlines() if "dbus" not in line and not line.startswith("/usr/bin/")]
    return " | ".join(kept[-lines:]) or "(no output)"


# ---------------------------------------------------------------------------------------- the DOM

VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)


@dataclass
class Panel:
    id: str
    state: str
    message: str = ""


@dataclass
class Dashboard:
    """What the page shows, as read from its DOM."""

    rendered: bool = False
    panels: list[Panel] = field(default_factory=list)
    csp_violations: str = ""
    # The health strip's targets and the firing alerts: their data-* attributes.
    targets: list[dict[str, str]] = field(default_factory=list)
    alerts: list[dict[str, str]] = field(default_factory=list)


class _DashboardParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Dashboard()
        # Open elements: (tag, panel it opened or None, collects text for: "message"/"csp"/None).
        self.stack: list[tuple[str, Panel | None, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "body":
            self.page.rendered = a.get("data-rendered") == "1"
        panel = None
        if "data-panel" in a:
            panel = Panel(id=a["data-panel"], state=a.get("data-state", ""))
            self.page.panels.append(panel)
        collect = None
        if "message" in classes and self._panel() is not None and "hidden" not in a:
            collect = "message"
        if a.get("id") == "csp-violations" and "hidden" not in a:
            collect = "csp"
        if "target" in classes and "data-job" in a:
            self.page.targets.append({k[5:]: v for k, v in a.items() if k.startswith("data-")})
        if "alert" in classes and "data-alertname" in a:
            self.page.alerts.append({k[5:]: v for k, v in a.items() if k.startswith("data-")})
        if tag not in VOID_TAGS:
            self.stack.append((tag, panel, collect))

    def handle_endtag(self, tag: str) -> None:
        # Pop to the matching element (the serialiser closes every non-void element).
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        collecting = next((c for _, _, c in reversed(self.stack) if c), None)
        if collecting == "message":
            panel = self._panel()
            if panel is not None:
                panel.message += data
        elif collecting == "csp":
            self.page.csp_violations += data

    def _panel(self) -> Panel | None:
        return next((p for _, p, _ in reversed(self.stack) if p is not None), None)


def parse_dashboard(dom: str) -> Dashboard:
    parser = _DashboardParser()
    parser.feed(dom)
    parser.close()
    for panel in parser.page.panels:
        panel.message = " ".join(panel.message.split())
    parser.page.csp_violations = " ".join(parser.page.csp_violations.split())
    return parser.page


def check_dashboard(dom: str, expected: Sequence[str] = PANELS) -> list[str]:
    """The dashboard's problems: the first round not finished, a panel whose state is not ``ok`` (with
    its message), an expected panel missing, an unknown or doubled panel, a CSP violation."""
    page = parse_dashboard(dom)
    problems = []
    if not page.rendered:
        problems.append('page not rendered: <body> has no data-rendered="1" (the first round did not finish)')
    if page.csp_violations:
        problems.append(page.csp_violations)
    seen: dict[str, int] = {}
    for panel in page.panels:
        seen[panel.id] = seen.get(panel.id, 0) + 1
        if panel.state != "ok":
            detail = f": {panel.message}" if panel.message else ""
            problems.append(f"panel {panel.id} is {panel.state or 'without data-state'}{detail}")
    problems.extend(f"panel {pid} missing" for pid in expected if pid not in seen)
    problems.extend(f"panel {pid} is not an expected panel" for pid in seen if pid not in expected)
    problems.extend(f"panel {pid} appears {n} times" for pid, n in seen.items() if n > 1)
    return problems


# ---------------------------------------------------------------------------------------- the PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bytes per pixel of the 8-bit colour types: greyscale, RGB, greyscale+alpha, RGBA.
BYTES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}


@dataclass(frozen=True)
class PngInfo:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool
    # Filled when the pixels could be decoded (8-bit, not interlaced, no palette), else None.
    distinct_rows: int | None = None
    colours_sampled: int | None = None


def read_png(data: bytes, sample_every: int = 8) -> PngInfo:
    """The header of a PNG and, for 8-bit non-interlaced greyscale/RGB(A), how varied its pixels are:
    the number of distinct rows and of distinct colours in every ``sample_every``-th row."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG (bad signature)")
    pos = len(PNG_SIGNATURE)
    header = b""
    idat = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"truncated PNG chunk {kind!r}")
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]:
            raise ValueError(f"bad CRC in PNG chunk {kind!r}")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if len(header) != 13:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    info = PngInfo(width, height, depth, colour, interlace == 1)
    if depth != 8 or interlace or colour not in BYTES_PER_PIXEL:
        return info
    rows = unfilter(zlib.decompress(b"".join(idat)), width, height, BYTES_PER_PIXEL[colour])
    bpp = BYTES_PER_PIXEL[colour]
    colours: set[bytes] = set()
    for row in rows[::sample_every]:
        colours.update(row[i : i + bpp] for i in range(0, len(row), bpp))
    return PngInfo(width, height, depth, colour, False, len(set(rows)), len(colours))


def unfilter(raw: bytes, width: int, height: int, bpp: int) -> list[bytes]:
    """The pixel rows of decompressed 8-bit PNG image data (PNG filters 0-4 undone)."""
    stride = width * bpp
    if len(raw) != height * (stride + 1):
        raise ValueError(f"PNG data is {len(raw)} bytes, expected {height * (stride + 1)}")
    mask_low = int.from_bytes(b"\x7f" * stride, "big")
    mask_high = int.from_bytes(b"\x80" * stride, "big")
    rows: list[bytes] = []
    prior = bytes(stride)
    for r in range(height):
        kind = raw[r * (stride + 1)]
        line = raw[r * (stride + 1) + 1 : (r + 1) * (stride + 1)]
        if kind == 0:
            row = line
        elif kind == 1:
            out = bytearray(stride)
            for c in range(bpp):
                sums: list[int] = list(itertools.accumulate(line[c::bpp], _add_byte))
                out[c::bpp] = bytes(sums)
            row = bytes(out)
        elif kind == 2:
            # Bytewise addition modulo 256 over the whole row at once (no carry between bytes).
            a, b = int.from_bytes(line, "big"), int.from_bytes(prior, "big")
            row = (((a & mask_low) + (b & mask_low)) ^ ((a ^ b) & mask_high)).to_bytes(stride, "big")
        elif kind == 3:
            out = bytearray(stride)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                out[i] = (line[i] + ((left + prior[i]) >> 1)) & 0xFF
            row = bytes(out)
        elif kind == 4:
            out = bytearray(stride)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                up = prior[i]
                corner = prior[i - bpp] if i >= bpp else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                out[i] = (line[i] + predictor) & 0xFF
            row = bytes(out)
        else:
            raise ValueError(f"unknown PNG filter {kind} in row {r}")
        rows.append(row)
        prior = row
    return rows


def _add_byte(a: int, b: int) -> int:
    return (a + b) & 0xFF


def check_png(path: Path, width: int = WINDOW[0], height: int = WINDOW[1]) -> list[str]:
    """A screenshot's problems: not a PNG, not ``width`` x ``height``, one flat colour."""
    try:
        info = read_png(path.read_bytes())
    except (OSError, ValueError, zlib.error) as exc:
        return [f"{path}: {exc}"]
    return [f"{path}: {problem}" for problem in png_problems(info, width, height)]


def png_problems(info: PngInfo, width: int = WINDOW[0], height: int = WINDOW[1]) -> list[str]:
    """check_png on an image already read."""
    problems = []
    if (info.width, info.height) != (width, height):
        problems.append(f"{info.width}x{info.height}, expected {width}x{height}")
    if info.colours_sampled is None:
        problems.append(
            f"cannot check the pixels (bit depth {info.bit_depth}, colour type {info.colour_type}, "
            f"interlaced {info.interlaced})"
        )
    elif info.colours_sampled <= 1:
        problems.append("a single flat colour")
    return problems


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the dashboard's address, e.g. http://monitoring/")
    parser.add_argument("--screenshot", type=Path, help="write a screenshot here (PNG) and check it")
    parser.add_argument("--dom", type=Path, help="write the DOM here")
    parser.add_argument("--window", default=f"{WINDOW[0]},{WINDOW[1]}", help="width,height (default %(default)s)")
    parser.add_argument("--budget-ms", type=int, default=BUDGET_MS, help="virtual time for the page (ms)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="real time limit of the run (s)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.window.split(","))
    try:
        result = render(
            args.url, args.screenshot, window=(width, height), budget_ms=args.budget_ms, timeout=args.timeout
        )
    except BrowserError as exc:
        print(f"browser_check: {exc}", file=sys.stderr)
        return 2
    if args.dom:
        args.dom.write_text(result.dom)
    problems = check_dashboard(result.dom)
    if result.screenshot is not None:
        problems += check_png(result.screenshot, width, height)
    for problem in problems:
        print(problem)
    page = parse_dashboard(result.dom)
    down = [f"{t.get('job')}/{t.get('host')}" for t in page.targets if t.get("up") != "1"]
    firing = [f"{a.get('alertname')}({a.get('host')})" for a in page.alerts]
    print(
        f"browser_check: {len(page.panels)} panels, {len(problems)} problems, targets down: {down or 'none'}, "
        f"alerts firing: {firing or 'none'}, chromium {result.seconds:.1f} s",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
