"""pgBackRest on a running cluster: the archive's RPO under writes, backup time, repository size and
the RTO of a restore against the database's size (issue 19).

On a cluster deployed by site.yml (the Molecule cluster scenario's, or `make up`'s), through Docker
(the containers are named as the inventory's hosts) and the collection's own playbooks:

* RPO: a steady write load on the leader (pgbench, ``--rate`` transactions per second of a row of
  ``--row-bytes`` each, for ``--seconds``); every second the leader's current WAL position against
  the end of the newest archived segment (pg_stat_archiver) gives the archive lag in bytes, and the
  age of that segment's archiving in seconds. A leader lost at that moment loses that much.
* For each ``--sizes`` (pgbench scale factors: about 15 MB each; 0 is the database as it is): the
  data grown to that size, a full backup timed (playbooks/pg_backup.yml), the repository's size
  read, and a drill restore to the latest point timed (playbooks/pg_restore.yml: restore, replay,
  queries, removal; its own step times).

Figures are printed and saved to benchmarks/results/pg_backup.json, with a plot (pg_backup.png).
The pgbench tables are dropped at the end; the backups stay (retention expires them).

    python benchmarks/pg_backup.py -i ~/.ansible/tmp/molecule.XXXX.cluster/inventory/ansible_inventory.yml
    python benchmarks/pg_backup.py -i inventories/local --sizes 0 20 60 --rate 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "module_utils"))
import pgbackrest
from rolling_update import inventory_groups

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATABASE = "tutormax"
STANZA = "tutormax"
#: One row per transaction, into a table of its own (dropped at the end).
#: The payload is random hex (md5 of random numbers): TOAST's compression cannot shrink it, so each
#: row costs its size in WAL (a repeated character would compress to a few bytes).
WRITE_SCRIPT = (
    "INSERT INTO backup_bench_rows (payload) SELECT string_agg(md5(random()::text), '') "
    "FROM generate_series(1, :row_bytes / 32);\n"
)


def docker(*argv: str, check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603, S607
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv[:4])}: {done.stderr.strip()[-500:]}")
    return done.stdout


def psql(host: str, sql: str, database: str = DATABASE) -> str:
    return docker("exec", host, "runuser", "-u", "postgres", "--", "psql", "-d", database, "-XAtq", "-c", sql).strip()


def playbook(inventory: str, name: str, extra: dict[str, Any]) -> float:
    start = time.time()
    done = subprocess.run(  # noqa: S603
        ["ansible-playbook", "-i", inventory, str(REPO / "playbooks" / name), "-e", json.dumps(extra)],  # noqa: S607
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stdout[-3000:]}")
    return time.time() - start


def pgbench(host: str, *argv: str, timeout: float = 600) -> str:
    """pgbench on ``host`` as postgres, on the app's database (its binary from PostgreSQL's package)."""
    pg = ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pgbench"]
    return docker("exec", host, *pg, *argv, DATABASE, timeout=timeout)


def leader(members: list[str]) -> str:
    for host in members:
        if psql(host, "SELECT pg_is_in_recovery()", "postgres") == "f":
            return host
    raise RuntimeError("no member is out of recovery")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1), "max": round(ordered[-1], 1)}


def archive_sample(host: str) -> dict[str, Any]:
    """The leader's LSN and its archiver's newest segment, read in one query."""
    lsn, wal, age = psql(
        host,
        "SELECT pg_current_wal_lsn(), coalesce(last_archived_wal, ''), "
        "coalesce(extract(epoch FROM now() - last_archived_time), -1) FROM pg_stat_archiver",
        "postgres",
    ).split("|")
    return {
        "t": time.time(),
        "lsn": lsn,
        "lag_bytes": pgbackrest.archive_lag_bytes(lsn, wal or None),
        "archived_age_s": round(float(age), 1),
    }


def rpo(host: str, rate: float, seconds: int, row_bytes: int) -> dict[str, Any]:
    psql(host, "CREATE TABLE IF NOT EXISTS backup_bench_rows (id bigserial PRIMARY KEY, payload text NOT NULL)")
    docker("exec", "-i", host, "sh", "-c", f"cat > /tmp/backup_bench.sql <<'EOF'\n{WRITE_SCRIPT}EOF")
    samples: list[dict[str, Any]] = []
    script = "/tmp/backup_bench.sql"  # noqa: S108 - a path in the container
    argv = ["-n", "-f", script, "-D", f"row_bytes={row_bytes}", "-R", str(rate), "-T", str(seconds), "-c", "2"]
    writer = threading.Thread(target=pgbench, args=(host, *argv), kwargs={"timeout": seconds + 120}, daemon=True)
    start = time.time()
    writer.start()
    while writer.is_alive() and time.time() - start < seconds + 60:
        samples.append(archive_sample(host))
        time.sleep(1)
    writer.join()
    steady = [s for s in samples if s["t"] - start > min(10, seconds / 4)]
    return {
        "write_rate_tps": rate,
        "row_bytes": row_bytes,
        "seconds": seconds,
        "wal_bytes_per_s": round(
            (pgbackrest.lsn_to_int(samples[-1]["lsn"]) - pgbackrest.lsn_to_int(samples[0]["lsn"]))
            / max(samples[-1]["t"] - samples[0]["t"], 1)
        ),
        "lag_bytes": summary([s["lag_bytes"] for s in steady]),
        "archived_age_s": summary([s["archived_age_s"] for s in steady if s["archived_age_s"] >= 0]),
        "samples": [{k: s[k] for k in ("t", "lag_bytes", "archived_age_s")} for s in samples],
    }


def repo_bytes(backup: str) -> int:
    return int(docker("exec", backup, "du", "-sb", "/var/lib/pgbackrest").split()[0])


def size_point(inventory: str, host: str, backup: str, scale: int) -> dict[str, Any]:
    if scale > 0:
        pgbench(host, "-i", "-q", "-s", str(scale), "--foreign-keys", timeout=1800)
    database_bytes = int(psql(host, f"SELECT pg_database_size('{DATABASE}')"))
    backup_s = playbook(inventory, "pg_backup.yml", {"pg_backup_type": "full"})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "drill.json"
        restore_s = playbook(inventory, "pg_restore.yml", {"pg_restore_report": str(report)})
        drill = json.loads(report.read_text())
    return {
        "pgbench_scale": scale,
        "database_bytes": database_bytes,
        "full_backup_s": round(backup_s, 1),
        "repository_bytes": repo_bytes(backup),
        "restore_drill_s": round(restore_s, 1),
        "restore_steps_s": {s["step"]: s["seconds"] for s in drill["steps"]},
        "restored_bytes": drill["restored_bytes"],
    }


def plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    samples = figures["rpo"]["samples"]
    t0 = samples[0]["t"]
    left.plot([s["t"] - t0 for s in samples], [s["lag_bytes"] / 1048576 for s in samples], label="archive lag (MiB)")
    left.set_xlabel("seconds of steady writes")
    left.set_ylabel("MiB not yet archived")
    left.set_title(f"RPO: archive lag at {figures['rpo']['write_rate_tps']:g} writes/s")
    sizes = figures["sizes"]
    mib = [p["database_bytes"] / 1048576 for p in sizes]
    right.plot(mib, [p["restore_drill_s"] for p in sizes], "o-", label="restore drill (total)")
    right.plot(mib, [p["full_backup_s"] for p in sizes], "s-", label="full backup")
    right.set_xlabel("database size (MiB)")
    right.set_ylabel("seconds")
    right.set_title("RTO and backup time against size")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--inventory", required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="writes per second during the RPO run")
    parser.add_argument("--row-bytes", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 20], help="pgbench scale factors")
    parser.add_argument("--name", default="pg_backup")
    args = parser.parse_args()
    hosts = inventory_groups(args.inventory)
    members, backup = hosts["postgres"], hosts["backup"][0]
    host = leader(members)
    figures: dict[str, Any] = {"leader": host, "backup_host": backup, "started": time.time()}
    try:
        figures["rpo"] = rpo(host, args.rate, args.seconds, args.row_bytes)
        figures["sizes"] = [size_point(args.inventory, host, backup, scale) for scale in sorted(args.sizes)]
    finally:
        psql(
            host,
            "DROP TABLE IF EXISTS backup_bench_rows, pgbench_accounts, pgbench_branches, "
            "pgbench_history, pgbench_tellers",
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    plot(figures, RESULTS / f"{args.name}.png")
    shown = {k: v for k, v in figures.items() if k != "rpo"} | {
        "rpo": {k: v for k, v in figures["rpo"].items() if k != "samples"}
    }
    print(json.dumps(shown, indent=2))


if __name__ == "__main__":
    main()
