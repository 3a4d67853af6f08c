// TutorMax monitoring dashboard.
//
// Asks Prometheus' HTTP API (proxied same-origin; relative URLs so the page also works under a path
// prefix) for the last 30 minutes every 15 s and draws one SVG line chart per panel, one line per
// host. No framework, no external asset, nothing inline: it runs under
// `Content-Security-Policy: default-src 'self'; img-src 'self' data:; style-src 'self'`.
//
// Every panel element carries data-panel="<id>" and, once a round finished, data-state:
//   ok     at least one series with at least two points (chart panels), the query answered (alerts)
//   empty  the query answered without data ("no data" shown in the panel)
//   error  HTTP or query error (the message shown in the panel)
// document.body.dataset.rendered is "1" once the first round of every panel finished.
"use strict";

(function () {
  const RANGE_SECONDS = 30 * 60;
  const STEP_SECONDS = 15;
  const REFRESH_MS = 15000;
  const FETCH_TIMEOUT_MS = 10000;
  const CHART_HEIGHT = 200;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
  ];
  const STATE_COLORS = { succeeded: "#2ca02c", failed: "#d62728", retried: "#ff7f0e" };
  const JOB_ORDER = [
    "node", "api", "celery", "postgres", "patroni", "etcd", "redis", "sentinel", "nginx", "probe",
    "prometheus", "alertmanager",
  ];

  // Policy violations are recorded from the first moment, so a page that breaks the CSP says so.
  const cspViolations = [];
  document.addEventListener("securitypolicyviolation", function (event) {
    cspViolations.push(event.violatedDirective + " blocked " + (event.blockedURI || "inline content"));
    showViolations();
  });

  const PANELS = [
    {
      group: "API",
      id: "api-request-rate",
      title: "Request rate per host",
      unit: "reqps",
      queries: [{ expr: "sum by (host) (rate(tutormax_http_requests_total{route!=\"/metrics\"}[1m]))", legend: "{host}" }],
    },
    {
      group: "API",
      id: "api-latency-p99",
      title: "p99 latency per host",
      unit: "seconds",
      queries: [{
        expr: "histogram_quantile(0.99, sum by (host, le) "
          + "(rate(tutormax_http_request_duration_seconds_bucket{route!=\"/metrics\"}[2m])))",
        legend: "{host}",
      }],
    },
    {
      group: "API",
      id: "api-errors",
      title: "Errors (5xx) per host",
      unit: "reqps",
      // Prometheus' own scrapes of /metrics are not clients' requests: left out of the API panels.
      // A host that never answered 5xx has no such series: its request rate times 0 draws its line at 0.
      queries: [{
        expr: "sum by (host) (rate(tutormax_http_requests_total{route!=\"/metrics\",status=~\"5..\"}[1m]))"
          + " or sum by (host) (rate(tutormax_http_requests_total{route!=\"/metrics\"}[1m])) * 0",
        legend: "{host}",
      }],
    },
    {
      group: "PostgreSQL",
      id: "pg-connections",
      title: "Connections per host",
      unit: "count",
      queries: [
        { expr: "sum by (host) (pg_stat_activity_count)", legend: "{host}" },
        { expr: "max by (host) (pg_settings_max_connections)", legend: "{host} max_connections", ref: true },
      ],
    },
    {
      group: "PostgreSQL",
      id: "pg-replication-lag",
      title: "Replication lag per replica",
      unit: "bytes",
      // The leader's WAL position minus what each replica replayed (Patroni's metrics).
      queries: [{
        expr: "clamp_min(scalar(max(patroni_xlog_location and on (host) (patroni_primary == 1)))"
          + " - max by (host) (patroni_xlog_replayed_location and on (host) (patroni_replica == 1)), 0)",
        legend: "{host}",
      }],
    },
    {
      group: "PostgreSQL",
      id: "pg-slow-queries",
      title: "Slow queries running (over 5 s)",
      unit: "count",
      queries: [{ expr: "max by (host) (tutormax_slow_queries_running)", legend: "{host}" }],
    },
    {
      group: "Redis",
      id: "redis-memory",
      title: "Memory used per host",
      unit: "bytes",
      queries: [
        { expr: "sum by (host) (redis_memory_used_bytes{job=\"redis\"})", legend: "{host}" },
        { expr: "max by (host) (redis_memory_max_bytes{job=\"redis\"} > 0)", legend: "{host} maxmemory", ref: true },
      ],
    },
    {
      group: "Redis",
      id: "redis-hit-rate",
      title: "Keyspace hit rate per host",
      unit: "ratio",
      queries: [{
        expr: "sum by (host) (rate(redis_keyspace_hits_total{job=\"redis\"}[2m]))"
          + " / (sum by (host) (rate(redis_keyspace_hits_total{job=\"redis\"}[2m]))"
          + " + sum by (host) (rate(redis_keyspace_misses_total{job=\"redis\"}[2m])))",
        legend: "{host}",
      }],
    },
    {
      group: "Redis",
      id: "redis-clients",
      title: "Connected clients per host",
      unit: "count",
      queries: [{ expr: "sum by (host) (redis_connected_clients{job=\"redis\"})", legend: "{host}" }],
    },
    {
      group: "Celery",
      id: "celery-queue-depth",
      title: "Queue depth",
      unit: "count",
      // Redis drops an empty list, and the exporter then reports no size: an up Redis means 0 queued.
      queries: [{
        expr: "max by (key) (redis_key_size)"
          + " or on () label_replace(max(redis_up{job=\"redis\"}) * 0, \"key\", \"celery\", \"\", \"\")",
        legend: "{key}",
      }],
    },
    {
      group: "Celery",
      id: "celery-workers",
      title: "Workers online",
      unit: "count",
      queries: [
        { expr: "count(up{job=\"celery\"} == 1) or vector(0)", legend: "online (all hosts)" },
        { expr: "sum by (host) (up{job=\"celery\"})", legend: "{host}" },
        { expr: "count(up{job=\"celery\"})", legend: "configured", ref: true },
      ],
    },
    {
      group: "Celery",
      id: "celery-tasks",
      title: "Tasks per second by state",
      unit: "tasksps",
      colors: STATE_COLORS,
      queries: [{ expr: "sum by (state) (rate(tutormax_celery_tasks_total[1m]))", legend: "{state}" }],
    },
    {
      group: "Hosts",
      id: "host-cpu",
      title: "CPU used per host",
      unit: "percent",
      queries: [{
        expr: "100 * (1 - avg by (host) (rate(node_cpu_seconds_total{mode=\"idle\"}[1m])))",
        legend: "{host}",
      }],
    },
    {
      group: "Hosts",
      id: "host-memory",
      title: "Memory used per host",
      unit: "percent",
      queries: [{
        expr: "100 * (1 - sum by (host) (node_memory_MemAvailable_bytes)"
          + " / sum by (host) (node_memory_MemTotal_bytes))",
        legend: "{host}",
      }],
    },
  ];

  const UNITS = {
    reqps: { axis: "requests/s", format: function (v) { return number(v) + "/s"; } },
    tasksps: { axis: "tasks/s", format: function (v) { return number(v) + "/s"; } },
    seconds: { axis: "seconds", format: seconds },
    bytes: { axis: "bytes", format: bytes },
    count: { axis: "count", format: number },
    percent: { axis: "percent", format: function (v) { return number(v) + " %"; }, max: 100 },
    ratio: { axis: "hit rate", format: function (v) { return number(v * 100) + " %"; }, max: 1 },
  };

  // ------------------------------------------------------------------------------------ formats

  function number(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return trim(v / 1e9) + "G";
    if (a >= 1e6) return trim(v / 1e6) + "M";
    if (a >= 1e4) return trim(v / 1e3) + "k";
    return trim(v);
  }

  function trim(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
    return String(parseFloat(v.toFixed(digits)));
  }

  function seconds(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a < 1e-3) return trim(v * 1e6) + " µs";
    if (a < 1) return trim(v * 1e3) + " ms";
    return trim(v) + " s";
  }

  function bytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let x = v;
    while (Math.abs(x) >= 1024 && i < units.length - 1) {
      x /= 1024;
      i += 1;
    }
    return trim(x) + " " + units[i];
  }

  function clock(t) {
    const d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function legendName(template, metric) {
    const name = template.replace(/\{(\w+)\}/g, function (_, key) {
      return metric[key] !== undefined ? metric[key] : "";
    }).trim();
    if (name) return name;
    const labels = Object.keys(metric).filter(function (k) { return k !== "__name__"; });
    return labels.length ? labels.map(function (k) { return k + "=" + metric[k]; }).join(", ") : "value";
  }

  // ------------------------------------------------------------------------------------ DOM helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function setState(card, state, message) {
    card.dataset.state = state;
    const box = card.querySelector(".message");
    box.classList.remove("error", "empty");
    if (message) {
      box.textContent = message;
      box.classList.add(state);
      box.hidden = false;
    } else {
      box.textContent = "";
      box.hidden = true;
    }
  }

  function showViolations() {
    const box = document.getElementById("csp-violations");
    if (!box) return;
    box.dataset.count = String(cspViolations.length);
    box.textContent = "Content-Security-Policy violations: " + cspViolations.join("; ");
    box.hidden = cspViolations.length === 0;
  }

  // ------------------------------------------------------------------------------------ Prometheus

  async function prometheus(path, params) {
    const url = "api/v1/" + path + "?" + new URLSearchParams(params).toString();
    const controller = new AbortController();
    const timer = setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS);
    let response;
    let text;
    try {
      response = await fetch(url, {
        signal: controller.signal,
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      text = await response.text();
    } catch (err) {
      throw new Error("request failed: " + (err && err.name === "AbortError" ? "timed out" : String(err)));
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.error ? body.error : (text || response.statusText).slice(0, 200);
      throw new Error("HTTP " + response.status + ": " + detail);
    }
    if (!body || body.status !== "success" || !body.data) {
      throw new Error("query failed: " + (body && body.error ? body.error : "not a Prometheus answer"));
    }
    return body.data;
  }

  // ------------------------------------------------------------------------------------ charts

  function points(values) {
    const out = [];
    (values || []).forEach(function (pair) {
      const v = parseFloat(pair[1]);
      if (Number.isFinite(v)) out.push([Number(pair[0]), v]);
    });
    return out;
  }

  async function loadChart(panel, start, end) {
    const answers = await Promise.allSettled(panel.queries.map(function (q) {
      return prometheus("query_range", { query: q.expr, start: start, end: end, step: STEP_SECONDS });
    }));
    const errors = [];
    const series = [];
    answers.forEach(function (answer, i) {
      const q = panel.queries[i];
      if (answer.status === "rejected") {
        errors.push(answer.reason && answer.reason.message ? answer.reason.message : String(answer.reason));
        return;
      }
      const result = answer.value.resultType === "matrix" ? answer.value.result : [];
      result.forEach(function (s) {
        const metric = s.metric || {};
        series.push({
          name: legendName(q.legend, metric), host: metric.host, ref: !!q.ref, points: points(s.values),
        });
      });
    });
    series.sort(function (a, b) {
      return (a.ref - b.ref) || a.name.localeCompare(b.name, undefined, { numeric: true });
    });
    // A limit line takes the colour of its host's line.
    let colour = 0;
    const byHost = {};
    series.forEach(function (s) {
      const same = s.ref && s.host !== undefined ? byHost[s.host] : undefined;
      s.color = same || (panel.colors && panel.colors[s.name]) || PALETTE[colour++ % PALETTE.length];
      if (!s.ref && s.host !== undefined) byHost[s.host] = s.color;
    });
    const drawable = series.some(function (s) { return !s.ref && s.points.length >= 2; });
    if (errors.length) {
      panel.data = null;
      draw(panel);
      setState(panel.card, "error", "Query error: " + Array.from(new Set(errors)).join("; "));
    } else if (!drawable) {
      panel.data = null;
      draw(panel);
      setState(panel.card, "empty", "no data");
    } else {
      panel.data = { series: series, start: start, end: end };
      draw(panel);
      setState(panel.card, "ok");
    }
  }

  function niceStep(span, count) {
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / power;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * power;
  }

  function bytesStep(span, count) {
    // Binary steps (1, 2, 4, 8 ... KiB) so byte ticks read as round numbers.
    const raw = span / count;
    let step = 1;
    while (step < raw) step *= 2;
    return step;
  }

  function draw(panel) {
    const box = panel.card.querySelector(".chart");
    const legend = panel.card.querySelector(".legend");
    box.textContent = "";
    legend.textContent = "";
    const data = panel.data;
    if (!data) return;
    const unit = UNITS[panel.unit];
    const width = Math.max(280, Math.round(box.clientWidth || 420));
    const height = CHART_HEIGHT;
    const m = { left: 64, right: 14, top: 14, bottom: 34 };
    const plotW = width - m.left - m.right;
    const plotH = height - m.top - m.bottom;
    const root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
      "aria-label": panel.title,
    });
    box.appendChild(root);

    const primary = data.series.filter(function (s) { return !s.ref; });
    let hi = 0;
    let lo = 0;
    primary.forEach(function (s) {
      s.points.forEach(function (p) {
        hi = Math.max(hi, p[1]);
        lo = Math.min(lo, p[1]);
      });
    });
    // A limit (max_connections, maxmemory) is drawn only when it is close enough to matter;
    // otherwise it is only named in the legend.
    const refs = data.series.filter(function (s) { return s.ref; });
    refs.forEach(function (s) {
      const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
      s.drawn = Number.isFinite(last) && hi > 0 && last <= hi * 1.5;
      if (s.drawn) hi = Math.max(hi, last);
    });
    if (unit.max !== undefined && hi <= unit.max) hi = unit.max;
    if (hi <= lo) hi = lo + 1;
    const step = panel.unit === "bytes" && hi >= 1024 ? bytesStep(hi - lo, 4) : niceStep(hi - lo, 4);
    const yMin = Math.floor(lo / step) * step;
    const yMax = Math.ceil(hi / step) * step;
    const x = function (t) { return m.left + ((t - data.start) / (data.end - data.start)) * plotW; };
    const y = function (v) { return m.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH; };

    // Grid and y ticks.
    for (let v = yMin; v <= yMax + step / 2; v += step) {
      const yy = y(v);
      root.appendChild(svg("line", { x1: m.left, x2: m.left + plotW, y1: yy, y2: yy, class: "gridline" }));
      const label = svg("text", { x: m.left - 6, y: yy + 4, "text-anchor": "end", class: "tick" });
      label.textContent = unit.format(v);
      root.appendChild(label);
    }
    // Time ticks every 5 minutes.
    const every = 300;
    for (let t = Math.ceil(data.start / every) * every; t <= data.end; t += every) {
      const xx = x(t);
      root.appendChild(svg("line", { x1: xx, x2: xx, y1: m.top, y2: m.top + plotH, class: "gridline" }));
      const label = svg("text", { x: xx, y: m.top + plotH + 15, "text-anchor": "middle", class: "tick" });
      label.textContent = clock(t);
      root.appendChild(label);
    }
    root.appendChild(svg("rect", { x: m.left, y: m.top, width: plotW, height: plotH, class: "frame" }));
    const xTitle = svg("text", { x: m.left + plotW / 2, y: height - 3, "text-anchor": "middle", class: "axis-title" });
    xTitle.textContent = "time (local)";
    root.appendChild(xTitle);
    const yTitle = svg("text", {
      x: 0, y: 0, "text-anchor": "middle", class: "axis-title",
      transform: "translate(12 " + (m.top + plotH / 2) + ") rotate(-90)",
    });
    yTitle.textContent = unit.axis;
    root.appendChild(yTitle);

    data.series.forEach(function (s) {
      if (s.ref && !s.drawn) return;
      let d = "";
      let prev = null;
      s.points.forEach(function (p) {
        const gap = prev === null || p[0] - prev > STEP_SECONDS * 1.5;
        d += (gap ? "M" : "L") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
        prev = p[0];
      });
      if (!d) return;
      const path = svg("path", {
        d: d.trim(), fill: "none", stroke: s.color, "stroke-width": s.ref ? 1.2 : 1.8,
        "stroke-linejoin": "round", class: s.ref ? "series ref" : "series",
      });
      if (s.ref) path.setAttribute("stroke-dasharray", "5 4");
      const title = svg("title");
      title.textContent = s.name;
      path.appendChild(title);
      root.appendChild(path);
    });

    data.series.forEach(function (s) {
      const item = el("li", s.ref ? "ref" : "");
      const swatch = svg("svg", { width: 14, height: 10, class: "swatch", "aria-hidden": "true" });
      const mark = s.ref
        ? svg("line", { x1: 0, x2: 14, y1: 5, y2: 5, stroke: s.color, "stroke-width": 2, "stroke-dasharray": "4 2" })
        : svg("rect", { x: 0, y: 1, width: 14, height: 8, rx: 2, fill: s.color });
      swatch.appendChild(mark);
      item.appendChild(swatch);
      item.appendChild(el("span", "name", s.name));
      const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
      item.appendChild(el("span", "value", Number.isFinite(last) ? unit.format(last) : "–"));
      if (s.ref && !s.drawn) item.appendChild(el("span", "note", "(off scale)"));
      legend.appendChild(item);
    });
  }

  // ------------------------------------------------------------------------------------ top strip

  async function loadHealth(card) {
    const body = card.querySelector(".card-body");
    let data;
    try {
      data = await prometheus("query", { query: "up" });
    } catch (err) {
      body.textContent = "";
      setState(card, "error", "Query error: " + err.message);
      return;
    }
    const result = data.resultType === "vector" ? data.result : [];
    body.textContent = "";
    if (!result.length) {
      setState(card, "empty", "no data");
      return;
    }
    const jobs = {};
    result.forEach(function (s) {
      const job = s.metric.job || "(no job)";
      (jobs[job] = jobs[job] || []).push(s);
    });
    const names = Object.keys(jobs).sort(function (a, b) {
      const ia = JOB_ORDER.indexOf(a) < 0 ? JOB_ORDER.length : JOB_ORDER.indexOf(a);
      const ib = JOB_ORDER.indexOf(b) < 0 ? JOB_ORDER.length : JOB_ORDER.indexOf(b);
      return ia - ib || a.localeCompare(b);
    });
    const table = el("table", "targets");
    const head = el("tr");
    ["Job", "Up", "Targets"].forEach(function (h) { head.appendChild(el("th", "", h)); });
    table.appendChild(el("thead")).appendChild(head);
    const tbody = table.appendChild(el("tbody"));
    names.forEach(function (job) {
      const targets = jobs[job].sort(function (a, b) {
        return (a.metric.instance || "").localeCompare(b.metric.instance || "", undefined, { numeric: true });
      });
      const upCount = targets.filter(function (s) { return parseFloat(s.value[1]) === 1; }).length;
      const row = el("tr", upCount === targets.length ? "all-up" : "some-down");
      row.appendChild(el("td", "job", job));
      row.appendChild(el("td", "count", upCount + "/" + targets.length));
      const cell = el("td", "chips");
      targets.forEach(function (s) {
        const up = parseFloat(s.value[1]) === 1;
        const chip = el("span", "target " + (up ? "up" : "down"), s.metric.host || s.metric.instance || "?");
        chip.title = (s.metric.instance || "") + (up ? " up" : " DOWN");
        chip.dataset.job = job;
        chip.dataset.host = s.metric.host || "";
        chip.dataset.instance = s.metric.instance || "";
        chip.dataset.up = up ? "1" : "0";
        cell.appendChild(chip);
      });
      row.appendChild(cell);
      tbody.appendChild(row);
    });
    body.appendChild(table);
    setState(card, "ok");
  }

  async function loadAlerts(card) {
    const body = card.querySelector(".card-body");
    let data;
    try {
      data = await prometheus("query", { query: "ALERTS{alertstate=\"firing\"}" });
    } catch (err) {
      body.textContent = "";
      setState(card, "error", "Query error: " + err.message);
      return;
    }
    const result = data.resultType === "vector" ? data.result : [];
    body.textContent = "";
    card.dataset.count = String(result.length);
    if (!result.length) {
      body.appendChild(el("p", "all-clear", "No alerts firing"));
      setState(card, "ok");
      return;
    }
    const rank = { critical: 0, warning: 1 };
    result.sort(function (a, b) {
      const ra = rank[a.metric.severity] !== undefined ? rank[a.metric.severity] : 2;
      const rb = rank[b.metric.severity] !== undefined ? rank[b.metric.severity] : 2;
      return ra - rb || (a.metric.alertname || "").localeCompare(b.metric.alertname || "")
        || (a.metric.host || "").localeCompare(b.metric.host || "");
    });
    const list = el("ul", "alert-list");
    result.forEach(function (s) {
      const metric = s.metric;
      const severity = metric.severity || "none";
      const item = el("li", "alert " + (severity === "critical" ? "critical" : severity === "warning" ? "warning" : "other"));
      item.dataset.alertname = metric.alertname || "";
      item.dataset.host = metric.host || "";
      item.dataset.severity = severity;
      item.appendChild(el("span", "severity", severity));
      item.appendChild(el("span", "alertname", metric.alertname || "(unnamed)"));
      const where = metric.host || metric.instance || metric.job || "";
      if (where) item.appendChild(el("span", "where", where));
      const since = parseFloat(s.value[1]);
      list.appendChild(item);
      if (Number.isFinite(since) && since > 1e9) item.title = "active since " + new Date(since * 1000).toISOString();
    });
    body.appendChild(list);
    setState(card, "ok");
  }

  // ------------------------------------------------------------------------------------ page

  function build() {
    const groups = document.getElementById("groups");
    let current = null;
    let grid = null;
    PANELS.forEach(function (panel) {
      if (panel.group !== current) {
        current = panel.group;
        const section = el("section", "group");
        section.appendChild(el("h2", "group-title", current));
        grid = section.appendChild(el("div", "grid"));
        groups.appendChild(section);
      }
      const card = el("article", "card chart-card");
      card.dataset.panel = panel.id;
      card.dataset.state = "loading";
      const header = el("header", "card-header");
      const title = el("h3", "", panel.title);
      title.title = panel.queries.map(function (q) { return q.expr; }).join("\n");
      header.appendChild(title);
      header.appendChild(el("span", "unit", UNITS[panel.unit].axis));
      card.appendChild(header);
      card.appendChild(el("div", "chart"));
      const message = el("p", "message");
      message.hidden = true;
      card.appendChild(message);
      card.appendChild(el("ul", "legend"));
      grid.appendChild(card);
      panel.card = card;
    });
  }

  let running = false;

  async function refresh() {
    if (running) return;
    running = true;
    try {
      const end = Math.floor(Date.now() / 1000 / STEP_SECONDS) * STEP_SECONDS;
      const start = end - RANGE_SECONDS;
      const jobs = PANELS.map(function (panel) {
        return loadChart(panel, start, end).catch(function (err) {
          setState(panel.card, "error", "Rendering failed: " + (err && err.message ? err.message : String(err)));
        });
      });
      jobs.push(loadHealth(document.querySelector('[data-panel="health"]')));
      jobs.push(loadAlerts(document.querySelector('[data-panel="alerts"]')));
      await Promise.allSettled(jobs);
      const failed = document.querySelectorAll('[data-panel][data-state="error"]').length;
      const stamp = document.getElementById("last-update");
      stamp.textContent = "updated " + new Date().toLocaleTimeString([], { hour12: false })
        + (failed ? " (" + failed + " panel" + (failed > 1 ? "s" : "") + " failed)" : "");
      stamp.className = failed ? "stale" : "fresh";
      document.body.dataset.rendered = "1";
    } finally {
      running = false;
    }
  }

  function loop() {
    const started = Date.now();
    refresh().finally(function () {
      setTimeout(loop, Math.max(1000, REFRESH_MS - (Date.now() - started)));
    });
  }

  let resizeTimer = null;
  function onResize() {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      PANELS.forEach(function (panel) { if (panel.data && panel.card.dataset.state === "ok") draw(panel); });
    }, 200);
  }

  function start() {
    showViolations();
    build();
    window.addEventListener("resize", onResize);
    loop();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
