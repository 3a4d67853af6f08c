"""The rolling update under steady load, end to end, as a check that fails when it should.

    python benchmarks/rolling_update.py [--inventory inventories/local] [--lb-url http://127.0.0.1:8080]
        [--steps update,fail,rollback,back] [--rate 120] [--api-hosts a,b,c] [--worker-hosts w1,w2]

Each step runs `ansible-playbook rolling_update.yml` while benchmarks/loadgen.py sends a steady
mixed load (GET and POST, one connection per request, nothing retried) through the load balancer,
from --warmup plus --baseline seconds before the playbook until --after seconds after it (the
warm-up lets the API's connection pools and caches reach their steady state under the load, as
on a cluster that serves; its requests count like all others, only its latencies stay out of
"before"). Every response is
recorded; the step's plot marks each API host's time out of the pool and the worker restarts
(the playbook writes them to an events file, rolling_update_events_file).

  update    V0 -> V1 (V1: the next patch of what runs, unless --version): exit 0, no failed request,
            every API instance (sampled through the load balancer) and every Celery process on V1.
            Export tasks (several seconds each, on data seeded far in the past) are requested while
            the workers restart; those running on a worker when it stopped must end `done` after
            the stop (warm shutdown), and every export requested must end `done` (none lost).
  fail      V1 -> V2 with an invalid setting (CACHE_TTL_SECONDS=0 through app_release_env_extra:
            the app refuses to start, exit status 2): non-zero exit naming the host and the
            rollback, only the first API host touched, it answers nothing through the load
            balancer and is marked down there, the others still on V1, no failed request.
  rollback  back to V1 (the release kept from before V2): the failed host first, back in the pool,
            everything on V1, no failed request, nothing built or installed.
  back      back to V0 on every host, one by one (kept release: a link switch and a restart),
            no failed request, nothing built or installed.

Figures (requests, failures, p99 before/during, seconds per host) are printed and written to
benchmarks/results/rolling_update-<time>.json with one PNG per step. Exit status 0 only when every
check of every step passed. Traffic goes to the loopback URL only; the inventory is reached with
Ansible (the container connection of the local cluster or of a Molecule scenario).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

REPO = loadgen.REPO
RESULTS = loadgen.RESULTS
BAD_SETTING = {"CACHE_TTL_SECONDS": "0"}
EXPORT_END, EXPORT_DAYS = "2001-12-31", 365
HOLDER = "rolling-update-export-holder"
# The upstream file of the nginx_lb role, which tutormax.cluster.nginx_pool_info reads.
UPSTREAMS = "/etc/nginx/conf.d/tutormax-upstreams.conf"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Step:
    name: str
    version: str
    rc: int | None = None
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, bool(ok), detail))
        print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class Cluster:
    """The cluster as the harness sees it: Ansible for the hosts, the load balancer URL for HTTP."""

    def __init__(
        self,
        inventory: str,
        lb_url: str,
        api_hosts: list[str],
        worker_hosts: list[str],
        *,
        nice: int = 0,
        forks: int = 0,
    ) -> None:
        loadgen.check_loopback(lb_url)
        self.inventory = inventory
        # Every Ansible run of the harness runs at this nice level and with these forks (0: ansible.cfg's):
        # see --controller-nice and --forks.
        self.nice = nice
        self.forks = forks
        # More inventory sources, after the first (a new API host joins the `api` group this way).
        self.more_inventories: list[str] = []
        self.lb_url = lb_url.rstrip("/")
        groups = inventory_groups(inventory)
        self.api = api_hosts or groups.get("api", [])
        self.workers = worker_hosts or sorted(set(groups.get("celery_worker", []) + groups.get("celery_beat", [])))
        self.lbs = groups.get("lb", [])
        self.http = httpx.Client(base_url=self.lb_url, timeout=10, headers={"Connection": "close"})

    def inventory_args(self) -> list[str]:
        return [arg for source in [self.inventory, *self.more_inventories] for arg in ("-i", source)]

    def command(self, program: str, *args: str) -> list[str]:
        """``program`` (ansible or ansible-playbook) on the cluster's inventory, at the controller's nice level
        and with the harness's forks."""
        nice = ["nice", "-n", str(self.nice)] if self.nice else []
        forks = ["--forks", str(self.forks)] if self.forks else []
        return [*nice, program, *forks, *self.inventory_args(), *args]

    def add_api_host(self, host: str, path: Path) -> None:
        """Put ``host`` (in the inventory, in no group yet) into `api` for every later Ansible run."""
        path.write_text(json.dumps({"api": {"hosts": {host: {}}}}) + "\n")
        self.more_inventories.append(str(path))
        self.api = [*self.api, host]

    def sample(self, n: int = 60) -> dict[str, Counter[str]]:
        """Instance -> versions seen in ``n`` /health answers through the load balancer."""
        seen: dict[str, Counter[str]] = {}
        for _ in range(n):
            try:
                body = self.http.get("/health").json()
            except (httpx.HTTPError, ValueError):
                seen.setdefault("(error)", Counter())["-"] += 1
                continue
            seen.setdefault(body.get("instance_id", "?"), Counter())[body.get("version", "?")] += 1
        return seen

    def adhoc(self, pattern: str, module: str, args: dict[str, Any], become_user: str = "") -> list[str]:
        """The command line of one ad-hoc module run."""
        cmd = self.command("ansible", pattern, "-m", module, "-a", json.dumps(args))
        return cmd + (["--become", "--become-user", become_user] if become_user else [])

    @staticmethod
    def psql_args(sql: str, application_name: str = "") -> dict[str, Any]:
        """ansible.builtin.command's arguments for psql on database tutormax."""
        dsn = "dbname=tutormax" + (f" application_name={application_name}" if application_name else "")
        return {"argv": ["psql", "-d", dsn, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql]}

    def ansible(self, pattern: str, module: str, args: dict[str, Any], *, become_user: str = "") -> dict[str, Any]:
        """Run one ad-hoc module; returns host -> its result (the JSON callback's)."""
        cmd = self.adhoc(pattern, module, args, become_user)
        env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="true", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, timeout=300, env=env)  # noqa: S603
        try:
            # The JSON document comes first; ansible.cfg's timing callbacks print after it.
            document = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{\n") :])[0]
            results: dict[str, Any] = document["plays"][0]["tasks"][0]["hosts"]
        except (ValueError, KeyError, IndexError):
            raise RuntimeError(
                f"ansible {pattern} {module} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}"
            ) from None
        return results

    def site_check_changes(self, version: str, log: Path | None = None) -> tuple[dict[str, int], list[str]]:
        """`site.yml --check` on the load balancers, API and Celery hosts, naming no release (site.yml
        keeps the one the hosts run): host -> changed count (0 everywhere when the rollout left exactly
        what the roles write). ``version`` is the release the hosts must run (site.yml's report names it)."""
        # Limited to the hosts it checks; site.yml reads the addresses of the hosts outside the limit
        # (the database and Redis hosts the app's environment names) itself.
        limit = "lb:api:celery_worker:celery_beat:localhost"
        cmd = self.command("ansible-playbook", "site.yml", "--check", "--limit", limit)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, timeout=900)  # noqa: S603
        if log is not None:
            log.write_text(proc.stdout + proc.stderr)
        checked = set(self.lbs + self.api + self.workers)
        recap = re.findall(r"(?m)^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
        counts = {host: int(changed) for host, changed, _, _ in recap if host in checked}
        if proc.returncode != 0 or set(counts) != checked:
            raise RuntimeError(f"site.yml --check failed (rc={proc.returncode}): {proc.stdout[-1500:]}")
        if f"Release {version} (what the app hosts run)" not in " ".join(proc.stdout.split()):
            raise RuntimeError(f"site.yml --check did not keep {version}: {proc.stdout[-1500:]}")
        return counts, [t for t in changed_tasks(proc.stdout) if t.rsplit(": ", 1)[-1] in checked]

    @property
    def primary(self) -> str:
        """The PostgreSQL server that takes writes now (after a failover, not the inventory's
        postgres_primary): the one PostgreSQL host not in recovery."""
        answers = self.ansible(
            "postgres", "ansible.builtin.command", self.psql_args("SELECT pg_is_in_recovery()"), become_user="postgres"
        )
        leaders = [host for host, result in answers.items() if str(result.get("stdout", "")).strip() == "f"]
        if len(leaders) != 1:
            raise RuntimeError(f"not one PostgreSQL server takes writes: {leaders or 'none'} of {sorted(answers)}")
        return leaders[0]

    def psql(self, sql: str) -> str:
        leader = self.primary
        result = self.ansible(leader, "ansible.builtin.command", self.psql_args(sql), become_user="postgres")[leader]
        if result.get("rc") != 0:
            raise RuntimeError(f"psql failed: {result.get('stderr') or result.get('msg')}")
        return str(result.get("stdout", ""))

    def warm_shutdowns(self, host: str, since: float) -> list[dict[str, Any]]:
        """Each stop of a Celery worker unit on ``host`` since ``since`` (epoch), from its journal."""
        argv = ["journalctl", "--no-pager", "-o", "json", "--since", f"@{int(since)}", "-u", "tutormax-worker@*"]
        result = self.ansible(host, "ansible.builtin.command", {"argv": argv})[host]
        if result.get("rc") != 0:
            raise RuntimeError(f"journalctl on {host} failed: {result.get('stderr') or result.get('msg')}")
        return parse_warm_shutdowns(host, str(result.get("stdout", "")))

    def hold_unfinished_exports(self, hold: float, seconds: float, log: Path) -> subprocess.Popen[bytes]:
        """In the background, for ``seconds``: lock the rows of unfinished exports, ``hold`` s at a time.
        Its Ansible output goes to ``log``."""
        sql = f"""
            DO $$
            DECLARE deadline timestamptz := clock_timestamp() + interval '{int(seconds)} seconds';
            BEGIN
              WHILE clock_timestamp() < deadline LOOP
                -- Lock every export not yet done, as soon as it is requested (a quarter of a second),
                -- and release them all every `hold` seconds: a task waits in its first or last UPDATE.
                FOR i IN 1..greatest(1, ceil({float(hold)} / 0.25)::int) LOOP
                  PERFORM 1 FROM exports WHERE status IN ('pending', 'running') FOR UPDATE;
                  PERFORM pg_sleep(0.25);
                END LOOP;
                COMMIT;
                -- The updates that waited for the locks go through at once. Lock again soon: with a
                -- longer pause (1 s) the queue drained in it, and half the workers were idle at their SIGTERM.
                PERFORM pg_sleep(0.1);
              END LOOP;
            END $$;"""
        cmd = self.adhoc(self.primary, "ansible.builtin.command", self.psql_args(sql, HOLDER), "postgres")
        with log.open("wb") as out:
            return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    def request_export(self, ids: list[str], errors: list[str]) -> None:
        """Request one export (seconds of work on the seeded data) through the load balancer: its id
        goes to ``ids``, a refusal or a transport error to ``errors``."""
        try:
            response = self.http.post(
                "/api/exports", json={"kind": "daily_metrics", "end": EXPORT_END, "days": EXPORT_DAYS}
            )
            if response.status_code == 202:
                ids.append(response.json()["id"])
            else:
                errors.append(f"HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            errors.append(type(exc).__name__)

    def pools(self) -> dict[str, dict[str, list[str]]]:
        """Per load balancer: the API hosts in service and the ones marked down, read by the module the
        playbook reads them with (tutormax.cluster.nginx_pool_info on its upstream file)."""
        out = self.ansible("lb", "tutormax.cluster.nginx_pool_info", {"dest": UPSTREAMS})
        pools = {}
        for lb, result in out.items():
            if result.get("failed") or "pool" not in result:
                raise RuntimeError(f"nginx_pool_info on {lb} failed: {result.get('msg')}")
            pools[lb] = {"in_service": list(result["pool"]["in_service"]), "down": list(result["pool"]["down"])}
        return pools


def changed_tasks(output: str) -> list[str]:
    """'task: host' for every `changed:` line of an ansible-playbook output."""
    found, task = [], ""
    for line in output.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*?)\]", line)
        if header:
            task = header.group(1)
        changed = re.match(r"^changed: \[([^\]]+)\]", line)
        if changed:
            found.append(f"{task}: {changed.group(1)}")
    return found


def inventory_groups(inventory: str) -> dict[str, list[str]]:
    """Group -> hosts (children resolved) from ansible-inventory."""
    proc = subprocess.run(  # noqa: S603
        ["ansible-inventory", "-i", inventory, "--list"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    data = json.loads(proc.stdout)

    def hosts(group: str) -> list[str]:
        entry = data.get(group, {})
        found = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            found += [h for h in hosts(child) if h not in found]
        return found

    return {group: hosts(group) for group in data if group != "_meta"}


def next_patch(version: str, step: int = 1) -> str:
    major, minor, patch = (int(x) for x in re.match(r"(\d+)\.(\d+)\.(\d+)", version).groups())  # type: ignore[union-attr]
    return f"{major}.{minor}.{patch + step}"


SUCCEEDED = re.compile(
    r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]+)\] succeeded in .*'export_id': '(?P<export>[0-9a-f-]+)'"
)


def describe_failures(
    records: list[loadgen.Record], t_start: float, api_phase: tuple[float, float] | None, show: int = 3
) -> str:
    """When the failed requests fell, against the playbook's start and its API phase, and the first few."""
    failed = sorted((r for r in records if not r.ok), key=lambda r: r.t)
    if not failed:
        return ""
    text = f"; failed from +{failed[0].t - t_start:.1f} s to +{failed[-1].t - t_start:.1f} s after the playbook started"
    if api_phase:
        inside = sum(1 for r in failed if api_phase[0] <= r.t < api_phase[1])
        text += f" (API phase +{api_phase[0] - t_start:.1f} to +{api_phase[1] - t_start:.1f} s: {inside} of them)"
    samples = [
        f"+{r.t - t_start:.1f} s {r.method} {r.kind} -> {r.status or r.error} after {r.latency_ms:.0f} ms"
        + (f" {r.detail[:100]!r}" if r.detail else "")
        for r in failed[:show]
    ]
    return text + "; first: " + "; ".join(samples)


def parse_warm_shutdowns(host: str, journal_json: str) -> list[dict[str, Any]]:
    """Stops of worker units in ``journalctl -o json`` output: when SIGTERM arrived (celery logs
    "Warm shutdown"), which exports the unit finished after it, and how the unit ended."""
    open_stops: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for line in journal_json.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = int(entry.get("__REALTIME_TIMESTAMP", 0)) / 1e6
        message = str(entry.get("MESSAGE", ""))
        unit = entry.get("_SYSTEMD_UNIT", "")
        about = entry.get("UNIT", "") if entry.get("_PID") == "1" or unit == "init.scope" else ""
        if unit.startswith("tutormax-worker@") and "Warm shutdown" in message:
            open_stops[unit] = {"host": host, "unit": unit, "sigterm": at, "finished_after_sigterm": [],
                                "ended": "still stopping"}  # fmt: skip
        elif unit in open_stops and (match := SUCCEEDED.search(message)):
            stop = open_stops[unit]
            stop["finished_after_sigterm"].append({
                "host": host, "task": match["name"], "export_id": match["export"],
                "seconds_after_sigterm": round(at - stop["sigterm"], 1),
            })  # fmt: skip
        elif about in open_stops and ("Deactivated successfully" in message or "Killing" in message
                                      or "Failed with result" in message):  # fmt: skip
            stop = open_stops.pop(about)
            stop["ended"] = "clean" if "Deactivated successfully" in message else message
            stop["stop_seconds"] = round(at - stop["sigterm"], 1)
            done.append(stop)
    return done + list(open_stops.values())


class ExportStream:
    """Export tasks that run for seconds while the workers restart, followed to their end.

    An export of the app takes well under a second here. So that one is surely running when a worker
    gets SIGTERM, a session on the primary holds the row of every export not yet done (SELECT ... FOR
    UPDATE, released every ``hold`` seconds): the task's first UPDATE (to `running`) or its last (to
    `done`) waits for it, inside the worker, like a slow query would. Requests come faster than the
    held workers finish, so every worker is busy at its SIGTERM. (Holding only running rows let an
    export that took a quarter of a second slip through: in two CI runs no worker had a task at its
    SIGTERM.) ``hold`` stays below the app's statement timeout (15 s).
    """

    def __init__(self, cluster: Cluster, events: Path, interval: float, limit: int, hold: float) -> None:
        self.cluster, self.events, self.interval, self.limit, self.hold = cluster, events, interval, limit, hold
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.started = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.holder: subprocess.Popen[bytes] | None = None
        self.holder_log = events.with_name(events.name.replace(".events.jsonl", "") + ".holder.log")
        #: Whether the lock holder's session was still there when the workers were back, and its exit
        #: status then (None: still running, as it should be).
        self.holder_state: dict[str, Any] = {}

    def _time_to_start(self, planned: list[str]) -> bool:
        """Exports start once the first API host is back (an API host is out of the pool for a few
        seconds only, so the Celery phase follows the last one closely), or at the Celery phase."""
        events = loadgen.read_events(self.events)
        finished = {e["host"] for e in events if e.get("event") in ("returned", "failed")}
        phase4 = any(e.get("event", "").startswith("worker") for e in events)
        return phase4 or (bool(planned) and planned[0] in finished) or (not planned and bool(finished))

    def _celery_phase_over(self) -> bool:
        events = loadgen.read_events(self.events)
        back = {e["host"] for e in events if e.get("event") == "worker_back"}
        return bool(self.cluster.workers) and set(self.cluster.workers) <= back

    def _run(self) -> None:
        # The lock holder (an ad-hoc Ansible run on the primary) takes seconds to start, and the Celery
        # phase now follows the API phase within seconds: start it with the step. It holds only
        # exports not yet done, and there are none before the first one is requested below.
        if self.hold > 0:
            self.holder = self.cluster.hold_unfinished_exports(
                self.hold, seconds=min(900, self.limit * self.interval + 300), log=self.holder_log
            )
        planned: list[str] | None = None
        while not self.stop.is_set():
            if planned is None:
                start = [e for e in loadgen.read_events(self.events) if e.get("event") == "start"]
                if start:
                    planned = list(start[0].get("detail", {}).get("api", []))
            if planned is not None and self._time_to_start(planned):
                break
            time.sleep(0.3)
        # Exports start well before the first worker stops, and keep coming until every Celery host
        # is back (or `limit` were requested), so that one runs at every SIGTERM.
        while not self.stop.is_set() and len(self.ids) < self.limit and not self._celery_phase_over():
            self.cluster.request_export(self.ids, self.errors)
            self.stop.wait(self.interval)

    def follow(self, timeout: float) -> dict[str, dict[str, Any]]:
        """Each export's final state (waits until none is pending or running, at most ``timeout`` s)."""
        deadline = time.time() + timeout
        # The workers are back: end the lock holder first (by its session's name; killing the local
        # ansible process would leave the backend running), so that the queue drains at full speed.
        if self.holder is not None:
            ended = self.cluster.psql(
                f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{HOLDER}'"  # noqa: S608
            )
            self.holder_state = {"sessions": ended.strip(), "rc": self.holder.poll(), "log": str(self.holder_log)}
            self.holder.kill()
        return self._follow({}, deadline)

    def _follow(self, states: dict[str, dict[str, Any]], deadline: float) -> dict[str, dict[str, Any]]:
        while True:
            for export_id in self.ids:
                if states.get(export_id, {}).get("status") in ("done", "failed"):
                    continue
                try:
                    states[export_id] = self.cluster.http.get(f"/api/exports/{export_id}").json()
                except (httpx.HTTPError, ValueError) as exc:
                    states[export_id] = {"status": f"unreadable: {type(exc).__name__}"}
            pending = [i for i in self.ids if states[i].get("status") not in ("done", "failed")]
            if not pending or time.time() > deadline:
                return states
            time.sleep(2)


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cluster = Cluster(
            args.inventory,
            args.lb_url,
            [h for h in args.api_hosts.split(",") if h],
            [h for h in args.worker_hosts.split(",") if h],
            nice=args.controller_nice,
            forks=args.forks,
        )
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.steps: list[Step] = []
        RESULTS.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ helpers
    def versions(self) -> dict[str, Counter[str]]:
        return self.cluster.sample(self.args.samples)

    def seed_exports(self) -> None:
        """Daily metrics far in the past, so that one export takes seconds (and nothing else reads them)."""
        tutors, days = int(self.args.export_tutors), EXPORT_DAYS - 1
        # A fresh cluster has no tutor yet: create the ones the metrics belong to through the API.
        rng = random.Random(7)  # noqa: S311 - only names test tutors
        have = len(self.cluster.http.get(f"/api/tutors?limit={tutors}").json()["items"])
        for _ in range(tutors - have):
            self.cluster.http.post("/api/tutors", json=loadgen.new_tutor(rng)).raise_for_status()
        sql = (
            "INSERT INTO daily_metrics (tutor_id, day, sessions_total, sessions_completed, no_shows, cancellations,"  # noqa: S608
            " minutes_taught, ratings_count, rating_sum, avg_rating)"
            " SELECT t.id, d::date, 3, 2, 1, 0, 90, 2, 8, 4.0 FROM (SELECT id FROM tutors ORDER BY id"
            f" LIMIT {tutors}) t,"
            f" generate_series(date '{EXPORT_END}' - {days}, date '{EXPORT_END}', interval '1 day') d"
            " ON CONFLICT DO NOTHING;"
            f" DELETE FROM daily_metrics WHERE day <= date '{EXPORT_END}'"
            f" AND tutor_id NOT IN (SELECT id FROM tutors ORDER BY id LIMIT {tutors});"
            f" SELECT count(*) FROM daily_metrics WHERE day <= date '{EXPORT_END}';"
        )
        print("seeding export data:", self.cluster.psql(sql)[-60:], flush=True)

    def playbook(self, version: str, events: Path, log: Path, extra: dict[str, Any]) -> subprocess.Popen[bytes]:
        cmd = self.cluster.command(
            "ansible-playbook",
            "rolling_update.yml",
            "-e",
            json.dumps({"tutormax_version": version, "rolling_update_events_file": str(events), **extra}),
        )
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", NO_COLOR="1")
        print(f"  $ {' '.join(cmd)}  (log: {log})", flush=True)
        with log.open("wb") as out:
            return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603

    def run_step(
        self,
        name: str,
        version: str,
        *,
        extra: dict[str, Any] | None = None,
        exports: bool = False,
        checks: Callable[[Step, dict[str, Any], list[dict[str, Any]], str], None],
    ) -> Step:
        step = Step(name, version)
        self.steps.append(step)
        prefix = f"rolling_update-{self.stamp}-{name}"
        events, log = RESULTS / f"{prefix}.events.jsonl", RESULTS / f"{prefix}.ansible.log"
        events.unlink(missing_ok=True)
        print(
            f"\n== {name}: rolling_update.yml -e tutormax_version={version} under {self.args.rate:g} req/s", flush=True
        )
        generator = loadgen.LoadGenerator(
            self.cluster.lb_url, self.args.rate, max_in_flight=self.args.max_in_flight, timeout=self.args.timeout
        )
        generator.start(self.args.warmup + self.args.baseline + self.args.playbook_timeout + self.args.after + 30)
        time.sleep(self.args.warmup + self.args.baseline)
        stream = ExportStream(
            self.cluster, events, self.args.export_interval, self.args.export_limit, self.args.export_hold
        )
        t_start = time.time()
        proc = self.playbook(version, events, log, json.loads(self.args.extra_vars) | (extra or {}))
        if exports:
            stream.thread.start()
        try:
            step.rc = proc.wait(timeout=self.args.playbook_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            step.rc = proc.wait()
            step.check("playbook finished in time", False, f"killed after {self.args.playbook_timeout} s")
        t_end = time.time()
        stream.stop.set()
        time.sleep(self.args.after)
        result = generator.stop()
        step.seconds = round(t_end - t_start, 1)
        event_list = loadgen.read_events(events)
        warm = result.started + self.args.warmup
        windows = [
            ("warmup", result.started, warm),
            ("before", warm, t_start),
            ("during", t_start, t_end),
            ("after", t_end, 1e12),
        ]
        # From the first drain to the last host back (or failed): the API hosts switching, without the
        # staging, migration, Celery and post-check phases around it.
        drains = [float(e["t"]) for e in event_list if e.get("event") == "drain"]
        ends = [float(e["t"]) for e in event_list if e.get("event") in ("returned", "failed")]
        if drains and ends:
            windows.append(("api_phase", min(drains), max(ends)))
        summary = loadgen.summarize(result, windows)
        paths = loadgen.write_results(
            prefix, result, summary, event_list, title=f"rolling_update.yml -e tutormax_version={version} ({name})"
        )
        output = log.read_text(errors="replace")
        spans = loadgen.host_spans(event_list)
        workers = [e for e in event_list if e.get("event") == "worker_back"]
        step.figures = {
            "playbook_rc": step.rc,
            "playbook_seconds": step.seconds,
            "requests": summary["overall"]["requests"],
            "failed": summary["overall"]["failed"],
            "non_2xx": summary["overall"]["non_2xx"],
            "errors": summary["overall"]["errors"],
            "writes": summary["overall"]["writes"],
            "by_status": summary["overall"]["by_status"],
            "rate_per_s": summary["overall"]["rate_per_s"],
            "p50_ms": {w: s["p50_ms"] for w, s in summary["windows"].items()},
            "p99_ms": {w: s["p99_ms"] for w, s in summary["windows"].items()},
            "api_host_seconds": {s["host"]: s.get("seconds") for s in spans},
            # From `ansible-playbook` to each API host back in (or, for a new host, first in) every load
            # balancer's pool and seen serving there: for a host added to `api`, the time to scale out.
            "api_host_serving_after_s": {
                s["host"]: round(float(s["end"]) - t_start, 1) for s in spans if s["outcome"] == "returned"
            },
            "api_host_no_traffic_s": loadgen.instance_gaps(result.records, spans),
            "api_host_drain_wait_s": {
                e["host"]: (e.get("detail") or {}).get("waited_s") for e in event_list if e.get("event") == "drained"
            },
            "worker_host_seconds": {e["host"]: (e.get("detail") or {}).get("seconds") for e in workers},
            "files": {k: str(v) for k, v in paths.items()} | {"ansible_log": str(log), "events": str(events)},
        }
        print(
            f"  {step.figures['requests']} requests ({step.figures['writes']} POST), {step.figures['failed']} failed; "
            f"p99 before {step.figures['p99_ms'].get('before')} ms, during {step.figures['p99_ms'].get('during')} ms "
            f"(API phase {step.figures['p99_ms'].get('api_phase')} ms); "
            f"playbook {step.seconds} s rc={step.rc}; API hosts out of the pool (s): "
            f"{step.figures['api_host_seconds']}",
            flush=True,
        )
        step.check(
            "no failed client request",
            summary["overall"]["failed"] == 0,
            f"{summary['overall']['requests']} requests, by status {summary['overall']['by_status']}, "
            f"errors {summary['overall']['by_error']}"
            + describe_failures(result.records, t_start, {w[0]: (w[1], w[2]) for w in windows}.get("api_phase")),
        )
        step.check(
            f"load held at least {self.args.min_rate:g} req/s during the playbook",
            (summary["windows"].get("during", {}).get("rate_per_s") or 0) >= self.args.min_rate,
            f"{summary['windows'].get('during', {}).get('rate_per_s')} req/s",
        )
        checks(step, {"events": event_list, "spans": spans, "summary": summary, "stream": stream}, event_list, output)
        return step

    def check_versions(self, step: Step, expected: dict[str, str]) -> None:
        seen = self.versions()
        wrong = {h: dict(seen.get(h, {})) for h, v in expected.items() if set(seen.get(h, {})) != {v}}
        step.check(
            "every API instance answers through the load balancer with the expected version",
            not wrong,
            f"expected {expected}; seen {{{', '.join(f'{h}: {dict(c)}' for h, c in sorted(seen.items()))}}}",
        )

    # ------------------------------------------------------------------ steps
    def step_update(self, v0: str, v1: str) -> None:
        self.seed_exports()
        new_host = self.args.new_api_host
        if new_host:
            # Scale out during the update: a host that has never run the API joins the `api` group.
            self.cluster.add_api_host(new_host, RESULTS / f"rolling_update-{self.stamp}-new-api-host.json")

        def checks(step: Step, ctx: dict[str, Any], events: list[dict[str, Any]], output: str) -> None:
            step.check("playbook exit status 0", step.rc == 0, f"rc={step.rc}")
            returned = [s["host"] for s in ctx["spans"] if s["outcome"] == "returned"]
            step.check("every API host drained and returned", set(returned) == set(self.cluster.api), str(returned))
            self.check_versions(step, dict.fromkeys(self.cluster.api, v1))
            step.check(
                "the post-check found every process on the new version",
                f"Every API instance and Celery process runs {v1}" in output,
            )
            backs = {e["host"] for e in events if e.get("event") == "worker_back"}
            step.check("every Celery host restarted", backs == set(self.cluster.workers), str(sorted(backs)))
            self.check_exports(step, ctx["stream"], events)
            if new_host:
                step.figures["new_api_host_serving_after_s"] = step.figures["api_host_serving_after_s"].get(new_host)
                print(
                    f"  the new API host {new_host} served through every load balancer "
                    f"{step.figures['new_api_host_serving_after_s']} s after ansible-playbook started",
                    flush=True,
                )
                plan = next((e.get("detail") or {} for e in events if e.get("event") == "start"), {})
                drains = [e["host"] for e in events if e.get("event") == "drain"]
                pools = self.cluster.pools()
                step.check(
                    f"the new API host {new_host} was deployed first, then joined every load balancer's pool",
                    plan.get("new") == [new_host]
                    and drains[:1] == [new_host]
                    and all(new_host in p["in_service"] for p in pools.values()),
                    f"plan new {plan.get('new')}, order {drains}, pools {json.dumps(pools)}",
                )
            # The drain (tutormax.cluster.nginx_upstreams) and the switch (tutormax.cluster.release_switch)
            # leave the same files as the nginx_lb, api, celery and app_release roles: site.yml must find
            # nothing to do. (--no-site-check: the cluster scenario's next site.yml run checks it instead.)
            if not self.args.site_check:
                return
            changes, tasks = self.cluster.site_check_changes(
                v1, RESULTS / f"rolling_update-{self.stamp}-site-check.log"
            )
            step.check(
                f"site.yml --check naming no release keeps {v1} and changes nothing on the load balancers, "
                "API and Celery hosts",
                not any(changes.values()),
                f"changed per host: {changes}; {tasks}",
            )

        self.run_step("update", v1, exports=True, checks=checks)

    def check_exports(self, step: Step, stream: ExportStream, events: list[dict[str, Any]]) -> None:
        states = stream.follow(self.args.export_timeout)
        by_status = Counter(s.get("status") for s in states.values())
        step.check(
            "every export requested during the worker restarts finished (no task lost)",
            bool(states) and by_status == Counter({"done": len(stream.ids)}) and not stream.errors,
            f"{len(stream.ids)} requested, {dict(by_status)}, request errors {stream.errors}",
        )
        # Ground truth from each worker's journal: SIGTERM ("Warm shutdown"), the tasks the stopping
        # unit finished after it, and how the unit ended (a clean exit, or killed at its timeout).
        shutdowns = [d for host in self.cluster.workers for d in self.cluster.warm_shutdowns(host, stream.started)]
        through = [t for d in shutdowns for t in d["finished_after_sigterm"]]
        finished = [f"{x['host']}: {x['task']} {x['seconds_after_sigterm']} s after" for x in through]
        lost = [x for x in through if states.get(x["export_id"], {}).get("status") not in (None, "done")]
        unclean = [f"{d['host']} {d['unit']}: {d['ended']}" for d in shutdowns if d["ended"] != "clean"]
        step.figures["exports"] = {"requested": len(stream.ids), "by_status": dict(by_status),
                                   "warm_shutdowns": shutdowns, "lock_holder": stream.holder_state}  # fmt: skip
        step.check(
            "tasks running when a worker got SIGTERM finished before it stopped (warm shutdown, none killed)",
            bool(through) and not lost and not unclean and len(shutdowns) >= len(self.cluster.workers),
            f"{len(shutdowns)} warm shutdown(s); {len(through)} task(s) finished after SIGTERM "
            f"({', '.join(finished) or 'none'})"
            + (f"; not done: {lost}" if lost else "")
            + (f"; not clean: {unclean}" if unclean else "")
            + (f"; lock holder at the end: {stream.holder_state}" if not through else ""),
        )

    def step_fail(self, v1: str, v2: str) -> str:
        failed_host: list[str] = []

        def checks(step: Step, ctx: dict[str, Any], events: list[dict[str, Any]], output: str) -> None:
            step.check("playbook exit status non-zero", step.rc not in (0, None), f"rc={step.rc}")
            drained = [e["host"] for e in events if e.get("event") == "drain"]
            failed = [e["host"] for e in events if e.get("event") == "failed"]
            failed_host.extend(failed)
            step.check(
                "stopped after the first API host",
                len(drained) == 1 and failed == drained and not any(e.get("event") == "returned" for e in events),
                f"drained {drained}, failed {failed}",
            )
            host = failed[0] if failed else "?"
            step.check(
                "the failure names the host and the rollback command",
                f"STOPPED at {host}" in output and f"rolling_update.yml -e tutormax_version={v1}" in output,
            )
            step.check(
                "the failure says the health gate failed and what the host answered",
                f"STOPPED at {host}" in output and "health gate: /health on" in output,
            )
            step.check(
                "the failed host's journal shows the refused setting",
                "CACHE_TTL_SECONDS" in output,
            )
            seen = self.versions()
            step.check(
                "the failed host answers nothing through the load balancer",
                host not in seen,
                f"seen {sorted(seen)}",
            )
            others = [h for h in self.cluster.api if h != host]
            self.check_versions(step, dict.fromkeys(others, v1))
            pools = self.cluster.pools()
            step.check(
                "the failed host is marked down on every load balancer, the others in service",
                all(p["down"] == [host] and sorted(p["in_service"]) == sorted(others) for p in pools.values()),
                json.dumps(pools),
            )
            step.check("no Celery host was touched", not any(e.get("event", "").startswith("worker") for e in events))

        # The gate gives up after 10 s (30 by default): the release never starts, waiting longer shows nothing more.
        extra = {"app_release_env_extra": BAD_SETTING, "rolling_update_health_retries": 10}
        self.run_step("fail", v2, extra=extra, checks=checks)
        return failed_host[0] if failed_host else ""

    def step_back(self, name: str, version: str, first: str = "") -> None:
        def checks(step: Step, ctx: dict[str, Any], events: list[dict[str, Any]], output: str) -> None:
            step.check("playbook exit status 0", step.rc == 0, f"rc={step.rc}")
            start = next((e for e in events if e.get("event") == "start"), {})
            plan = start.get("detail") or {}
            step.check(
                "nothing rebuilt or installed (the release was kept)",
                plan.get("stage") == [],
                f"install on: {plan.get('stage')}",
            )
            if first:
                order = [e["host"] for e in events if e.get("event") == "drain"]
                step.check(f"{first} (out of the pool) went first", order[:1] == [first], f"order {order}")
            self.check_versions(step, dict.fromkeys(self.cluster.api, version))
            step.check(
                "the post-check found every process on the version",
                f"Every API instance and Celery process runs {version}" in output,
            )
            pools = self.cluster.pools()
            step.check(
                "every API host is in service on every load balancer",
                all(sorted(p["in_service"]) == sorted(self.cluster.api) and not p["down"] for p in pools.values()),
                json.dumps(pools),
            )

        self.run_step(name, version, checks=checks, exports=False)

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        steps = [s for s in self.args.steps.split(",") if s]
        seen = self.versions()
        running = sorted({v for c in seen.values() for v in c})
        print(f"cluster: api {self.cluster.api}, workers {self.cluster.workers}, lb {self.cluster.lbs}; "
              f"versions seen through {self.cluster.lb_url}: { {h: dict(c) for h, c in seen.items()} }")  # fmt: skip
        if len(running) != 1 or set(seen) != set(self.cluster.api):
            print("refusing: every API host must answer through the load balancer with one version first")
            return 2
        v0 = running[0]
        v1 = self.args.version or next_patch(v0)
        v2 = self.args.bad_version or next_patch(v1)
        t0 = time.time()
        if "update" in steps:
            self.step_update(v0, v1)
        failed_host = ""
        if "fail" in steps:
            failed_host = self.step_fail(v1, v2)
        if "rollback" in steps:
            self.step_back("rollback", v1, failed_host)
        if "back" in steps:
            self.step_back("back", v0)
        report = {
            "stamp": self.stamp,
            "inventory": [self.cluster.inventory, *self.cluster.more_inventories],
            "lb_url": self.cluster.lb_url,
            "rate": self.args.rate,
            "controller_nice": self.args.controller_nice,
            "forks": self.args.forks,
            "versions": {"before": v0, "new": v1, "bad": v2},
            "seconds": round(time.time() - t0),
            "ok": all(s.ok for s in self.steps),
            "steps": [
                {
                    "name": s.name,
                    "version": s.version,
                    "ok": s.ok,
                    "figures": s.figures,
                    "checks": [c.__dict__ for c in s.checks],
                }
                for s in self.steps
            ],
        }
        path = RESULTS / f"rolling_update-{self.stamp}.json"
        path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\n{'step':<9} {'version':<8} {'rc':>3} {'playbook':>9} {'requests':>9} {'failed':>7} "
              f"{'p99 before':>11} {'p99 during':>11}  API host seconds out of pool")  # fmt: skip
        for s in self.steps:
            f = s.figures
            print(
                f"{s.name:<9} {s.version:<8} {s.rc!s:>3} {s.seconds:>8}s {f.get('requests', 0):>9} "
                f"{f.get('failed', 0):>7} {f.get('p99_ms', {}).get('before')!s:>11} "
                f"{f.get('p99_ms', {}).get('during')!s:>11}  {f.get('api_host_seconds')}"
            )
        failed = [f"{s.name}: {c.name}" for s in self.steps for c in s.checks if not c.ok]
        print(f"\n{'PASSED' if not failed else 'FAILED'} in {report['seconds']} s; report {path}")
        for line in failed:
            print("  failed:", line)
        return 0 if not failed else 1


def iso_after(value: str | None, epoch: float) -> bool:
    if not value:
        return False
    import datetime as dt

    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() > epoch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", default="inventories/local", help="inventory of the cluster (-i)")
    parser.add_argument("--lb-url", default="http://127.0.0.1:8080", help="load balancer's published URL (loopback)")
    parser.add_argument("--api-hosts", default="", help="API hosts, comma-separated (default: the api group)")
    parser.add_argument("--worker-hosts", default="", help="Celery hosts (default: celery_worker + celery_beat)")
    parser.add_argument("--steps", default="update,fail,rollback,back", help="any of update,fail,rollback,back")
    parser.add_argument(
        "--new-api-host",
        default="",
        help="a host of the inventory in no group yet: the update step adds it to `api` (scale out during a rollout)",
    )
    parser.add_argument(
        "--site-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the update, site.yml --check on the load balancers, API and Celery hosts must change nothing",
    )
    parser.add_argument("--version", default="", help="release to roll out (default: next patch of what runs)")
    parser.add_argument("--bad-version", default="", help="release of the failing step (default: the next patch)")
    parser.add_argument("--rate", type=float, default=110.0, help="requests per second through the load balancer")
    parser.add_argument("--min-rate", type=float, default=100.0, help="fail when the load fell below this")
    parser.add_argument("--max-in-flight", type=int, default=1000)
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a client waits for an answer before counting the request failed (nginx waits 60 s)",
    )
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="seconds of load before the baseline (counted, not in 'before')"
    )
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of load before each playbook")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after each playbook")
    parser.add_argument("--playbook-timeout", type=float, default=1500.0)
    parser.add_argument(
        "--extra-vars",
        default="{}",
        help="JSON settings for every rolling_update.yml run, e.g. '{\"rolling_update_serial\": 2}'",
    )
    parser.add_argument(
        "--controller-nice",
        type=int,
        default=10,
        help="nice level of every Ansible run of the harness: on one machine the containers (the hosts)"
        " and the controller share the CPU, in production the controller has its own; 0 = no change",
    )
    parser.add_argument(
        "--forks",
        type=int,
        default=5,
        help="forks of every Ansible run of the harness (0 = ansible.cfg's 20): with the hosts as containers on"
        " the controller's cores, a task on every host at once takes the CPU from the requests (the cluster"
        " scenario's drills measured p99 4.4 s and failed requests with 20, 0.37 s with 5, for the same run time)",
    )
    parser.add_argument("--samples", type=int, default=60, help="/health requests to see every instance's version")
    parser.add_argument("--export-tutors", type=int, default=40, help="tutors x 365 days of metrics per export")
    parser.add_argument("--export-interval", type=float, default=1.0, help="seconds between export requests")
    parser.add_argument("--export-limit", type=int, default=400, help="most exports one step requests")
    parser.add_argument("--export-hold", type=float, default=6.0, help="seconds a running export is held")
    parser.add_argument("--export-timeout", type=float, default=300.0, help="seconds to wait for the exports")
    args = parser.parse_args(argv)
    return Harness(args).run()


if __name__ == "__main__":
    sys.exit(main())
