"""PostgreSQL failover under writes, on Patroni members that run as Docker containers.

A writer on the client container inserts a row every 0.1 s through a libpq multi-host connection
(``target_session_attrs=read-write``), each attempt logged with its time and, when acknowledged,
the row's id. Two faults:

* the leader's postmaster SIGKILLed (Patroni alive): Patroni starts it again in place, or fails
  over after ``master_start_timeout``;
* the leader's container killed (the host lost): the leader lock expires after ``ttl`` and a
  replica takes over.

For each: seconds from the fault to the first acknowledged write, the writes that failed, and
every acknowledged id checked on the new leader (a lost acknowledged write is reported by id).

The molecule postgresql scenario's test runs one trial of each as a correctness check. As a
benchmark (the issue's 5 trials, p50/p95/max printed and saved to benchmarks/results/):

    python benchmarks/pg_failover.py --members pg-primary pg-replica --client pg-client \\
        --password-file ~/.cache/molecule/tutormax.cluster/postgresql/secrets/pg_app --trials 5

It only touches the named containers (docker exec, kill, start); the writes stay on their network.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: The writer's files, inside the client container (not on this machine).
LOG = "/tmp/failover.log"  # noqa: S108 - a path in the container
STOP = "/tmp/failover.stop"  # noqa: S108 - a path in the container
PATRONI_CONFIG = "/etc/patroni/15-main.yml"
DATA_DIR = "/var/lib/postgresql/15/main"

#: The writer: one attempt every 0.1 s until the stop file appears or the time is up (bounded).
WRITER = r"""
set -u
conn="$1"; log="$2"; stop="$3"; end=$(( $(date +%s) + $4 ))
psql "$conn" -XAtq -c "CREATE TABLE IF NOT EXISTS failover_probe
  (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())" >/dev/null 2>&1
: > "$log"
while [ ! -e "$stop" ] && [ "$(date +%s)" -lt "$end" ]; do
  t0=$(date +%s.%N)
  if id=$(psql "$conn" -XAtq -c "INSERT INTO failover_probe DEFAULT VALUES RETURNING id" 2>/dev/null); then
    echo "$t0 $(date +%s.%N) ok $id" >> "$log"
  else
    echo "$t0 $(date +%s.%N) fail" >> "$log"
  fi
  sleep 0.1
done
"""


def docker(*argv: str, check: bool = True, stdin: str | None = None, timeout: float = 120) -> str:
    command = ["docker", *argv]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv[:3])}: {done.stderr.strip()}")
    return done.stdout


def writes_back(attempts: list[tuple[float, float, bool]], fault_at: float) -> float | None:
    """Seconds from the fault until writes were accepted again: to the end of the first acknowledged
    attempt that started after the first one the fault failed (one that ended after the fault). No
    failed attempt: 0. None when none was acknowledged after it. Each attempt: (start, end, ok)."""
    ordered = sorted(attempts)
    first_fail = next((a for a in ordered if not a[2] and a[1] >= fault_at), None)
    if first_fail is None:
        return 0.0
    ok = next((a for a in ordered if a[2] and a[0] >= first_fail[0]), None)
    return round(ok[1] - fault_at, 2) if ok else None


@dataclass
class Drill:
    """The members' and the client's containers, and the app user's password."""

    members: tuple[str, ...]
    client: str
    app_password: str
    database: str = "tutormax"
    user: str = "tutormax"

    # ------------------------------------------------------------------ cluster state
    def running_members(self) -> list[str]:
        names = docker("ps", "--format", "{{.Names}}").split()
        return [m for m in self.members if m in names]

    def cluster(self) -> list[dict[str, Any]]:
        """Patroni's member list, asked of any running member."""
        for member in self.running_members():
            out = docker("exec", member, "patronictl", "-c", PATRONI_CONFIG, "list", "-f", "json", check=False)
            if out.strip().startswith("["):
                return list(json.loads(out))
        return []

    def leader(self) -> str | None:
        leaders = [m["Member"] for m in self.cluster() if m.get("Role") == "Leader" and m.get("State") == "running"]
        return leaders[0] if leaders else None

    def address(self, member: str) -> str:
        return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", member).split()[0]

    def conninfo(self, addresses: list[str]) -> str:
        return (
            f"host={','.join(addresses)} port=5432 dbname={self.database} user={self.user} "
            "target_session_attrs=read-write connect_timeout=2"
        )

    # ------------------------------------------------------------------ the writer
    def start_writer(self, seconds: int) -> None:
        # The password reaches the client through a root-only passfile on stdin, never a command line.
        docker(
            "exec",
            "-i",
            self.client,
            "sh",
            "-c",
            "umask 077; cat > /root/.pgpass",
            stdin=f"*:5432:{self.database}:{self.user}:{self.app_password}\n",
        )
        conn = self.conninfo([self.address(m) for m in self.members])
        docker("exec", self.client, "rm", "-f", STOP)
        docker(
            "exec",
            "-d",
            self.client,
            "bash",
            "-c",
            WRITER,
            "writer",
            conn,
            LOG,
            STOP,
            str(seconds),
        )
        time.sleep(1.5)

    def stop_writer(self) -> list[tuple[float, float, bool, int | None]]:
        """Each attempt: when it started, when it ended, acknowledged or not, the row's id."""
        docker("exec", self.client, "touch", STOP)
        time.sleep(3.0)
        return self.writer_rows()

    def writer_rows(self) -> list[tuple[float, float, bool, int | None]]:
        """The writer's attempts so far (see stop_writer)."""
        rows = []
        for line in docker("exec", self.client, "cat", LOG).splitlines():
            parts = line.split()
            if len(parts) >= 3:
                ok = parts[2] == "ok"
                rows.append((float(parts[0]), float(parts[1]), ok, int(parts[3]) if ok and len(parts) > 3 else None))
        return rows

    def missing(self, ids: list[int], leader: str) -> list[int]:
        if not ids:
            return []
        found = docker(
            "exec",
            leader,
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-XAtq",
            "-d",
            self.database,
            "-c",
            f"SELECT id FROM failover_probe WHERE id BETWEEN {int(min(ids))} AND {int(max(ids))}",  # noqa: S608 - ints
        )
        present = {int(x) for x in found.split()}
        return sorted(set(ids) - present)

    def wait_leader(self, not_this: str | None, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader and leader != not_this:
                return leader
            time.sleep(0.5)
        raise AssertionError(f"no leader other than {not_this} within {timeout} s: {self.cluster()}")

    def _measure(
        self, fault_at: float, rows: list[tuple[float, float, bool, int | None]], leader: str
    ) -> dict[str, Any]:
        """Writes are back when an attempt acknowledged after the first one the fault failed (an
        attempt that ended after the fault). No failed attempt at all: 0."""
        back = writes_back([(r[0], r[1], r[2]) for r in rows], fault_at)
        acknowledged = [r[3] for r in rows if r[2] and r[3] is not None]
        return {
            "writes_back_s": back,
            "attempts": len(rows),
            "acknowledged": len(acknowledged),
            "failed": sum(1 for r in rows if not r[2]),
            "lost": self.missing(acknowledged, leader),
        }

    @staticmethod
    def longest_outage(rows: list[tuple[float, float, bool, int | None]]) -> dict[str, Any]:
        """The longest run of failed attempts: from the start of its first attempt to the end of the
        next acknowledged one (seconds), when it began (epoch), and how many attempts failed in it."""
        best: dict[str, Any] = {"seconds": 0.0, "began": None, "failed_attempts": 0}
        first: tuple[float, float, bool, int | None] | None = None
        failed = 0
        for row in rows:
            if not row[2]:
                first = first or row
                failed += 1
            elif first is not None:
                if row[1] - first[0] > best["seconds"]:
                    best = {"seconds": round(row[1] - first[0], 2), "began": first[0], "failed_attempts": failed}
                first, failed = None, 0
        return best

    # ------------------------------------------------------------------ the faults
    def kill_postmaster_under_writes(self, observe: float = 20) -> dict[str, Any]:
        leader = self.leader()
        assert leader, "no leader before the drill"
        self.start_writer(int(observe) + 30)
        fault_at = time.time()
        docker("exec", leader, "sh", "-c", f"kill -9 $(head -1 {DATA_DIR}/postmaster.pid)")
        time.sleep(observe)
        rows = self.stop_writer()
        now = self.wait_leader(None, 30)
        return {
            "fault": "postmaster SIGKILL",
            "leader_before": leader,
            "leader_after": now,
            **self._measure(fault_at, rows, now),
        }

    def kill_leader_host_under_writes(self, observe: float = 40) -> dict[str, Any]:
        leader = self.leader()
        assert leader, "no leader before the drill"
        self.start_writer(int(observe) + 30)
        fault_at = time.time()
        docker("kill", leader)
        new = self.wait_leader(leader, observe + 30)
        remaining = observe - (time.time() - fault_at)
        if remaining > 0:
            time.sleep(remaining)
        rows = self.stop_writer()
        return {
            "fault": "leader container killed",
            "leader_before": leader,
            "leader_after": new,
            **self._measure(fault_at, rows, new),
        }

    def restart_host_and_wait_rejoined(self, member: str, timeout: float = 120) -> dict[str, Any]:
        start = time.monotonic()
        docker("start", member)
        deadline = start + timeout
        while time.monotonic() < deadline:
            me = [m for m in self.cluster() if m.get("Member") == member]
            leader = [m for m in self.cluster() if m.get("Role") == "Leader"]
            if (
                me
                and leader
                and me[0].get("State") in ("running", "streaming")
                and me[0].get("Role") != "Leader"
                and me[0].get("TL") == leader[0].get("TL")
            ):
                return {
                    "member": member,
                    "role": str(me[0]["Role"]).lower().replace(" ", "_"),
                    "rejoined_s": round(time.monotonic() - start, 1),
                    "timeline": me[0].get("TL"),
                }
            time.sleep(1)
        raise AssertionError(f"{member} did not rejoin within {timeout} s: {self.cluster()}")

    def save(self, name: str, figures: dict[str, Any]) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{name}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
        return path


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="+", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--name", default="pg_failover")
    parser.add_argument(
        "--start-writer",
        type=int,
        metavar="SECONDS",
        help="only start the writer in the background for at most SECONDS (a drill that outlives this process, "
        "such as the postgresql scenario's migration: its side effect stops it, its test reads the log)",
    )
    args = parser.parse_args()
    drill = Drill(tuple(args.members), args.client, args.password_file.read_text().split()[0])
    if args.start_writer:
        drill.start_writer(args.start_writer)
        return
    trials: dict[str, list[dict[str, Any]]] = {"postmaster": [], "host": [], "rejoin": []}
    for n in range(args.trials):
        trials["postmaster"].append(drill.kill_postmaster_under_writes())
        time.sleep(5)
        lost = drill.kill_leader_host_under_writes()
        trials["host"].append(lost)
        trials["rejoin"].append(drill.restart_host_and_wait_rejoined(lost["leader_before"]))
        print(
            f"trial {n + 1}: postmaster {trials['postmaster'][-1]['writes_back_s']} s, host {lost['writes_back_s']} s,"
            f" rejoined {trials['rejoin'][-1]['rejoined_s']} s"
        )
        time.sleep(5)
    summary = {
        kind: _summary([t["writes_back_s"] for t in trials[kind] if t["writes_back_s"] is not None])
        for kind in ("postmaster", "host")
    }
    summary["rejoin_s"] = _summary([t["rejoined_s"] for t in trials["rejoin"]])
    lost_total = sum(len(t["lost"]) for kind in ("postmaster", "host") for t in trials[kind])
    drill.save(args.name, {"summary_s": summary, "acknowledged_writes_lost": lost_total, "trials": trials})


if __name__ == "__main__":
    main()
