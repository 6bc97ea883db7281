// The staff metrics page: draws jobs/metrics.py's JSON with uPlot (vendored) and
// refreshes it every `data-every` seconds. `window.conveyorMetrics` exposes the charts
// and the last payload (the browser test reads a chart's data from there).
(function () {
  "use strict";
  const root = document.getElementById("metrics");
  if (!root || typeof uPlot === "undefined") return;

  const COLOURS = ["#2563eb", "#15803d", "#b91c1c", "#6b7280", "#a16207", "#7c3aed", "#0891b2", "#db2777"];
  const MAX_WORKER_SAMPLES = 720;
  const state = { charts: {}, data: null, updates: 0, errors: 0, workerSamples: [[], []] };
  window.conveyorMetrics = state;

  // name -> payload -> [[label, values], ...] (x values are the payload's `times`)
  const CHARTS = {
    jobs: (d) => [["Submitted", d.jobs.created], ["Succeeded", d.jobs.succeeded], ["Failed", d.jobs.failed], ["Cancelled", d.jobs.cancelled]],
    rows: (d) => [["Processed", d.rows.processed], ["Failed", d.rows.failed]],
    failures: (d) => [["Jobs failed %", d.failure_rate.jobs], ["Rows failed %", d.failure_rate.rows]],
    queue: (d) => [["Waiting jobs", d.queue.waiting]],
    wait: (d) => [["Average", d.queue.average], d.queue.longest ? ["Longest", d.queue.longest] : ["95th percentile", d.queue.p95]],
    running: (d) => {
      const kinds = Object.entries(d.running);
      return kinds.length ? kinds : [["(none)", d.times.map(() => 0)]];
    },
  };

  function chartWidth(el) {
    return Math.max(200, el.clientWidth || 600);
  }

  // Charts whose values are often isolated points between empty intervals: draw the points.
  const SPARSE = new Set(["failures", "wait"]);

  // Every chart's x axis spans the window (epoch seconds): a chart with one sample (the
  // workers chart after the first refresh) would otherwise be padded out to years.
  function windowRange(u, min, max) {
    const d = state.data;
    if (!d || !d.times.length) return [min, max];
    return [d.times[0], Math.max(d.generated_at, d.times[d.times.length - 1])];
  }

  function options(name, el, labels) {
    return {
      width: chartWidth(el),
      height: 200,
      scales: { x: { time: true, range: windowRange }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}].concat(labels.map((label, i) => ({
        label: label,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        points: SPARSE.has(name) ? { show: true, size: 5 } : { show: false },
      }))),
      axes: [{}, { size: yAxisWidth }],
    };
  }

  // Wide enough for the longest tick label ("12,000"): a fixed width clipped them.
  function yAxisWidth(u, values) {
    const longest = Math.max(0, ...(values || []).map((v) => String(v).length));
    return Math.max(40, 16 + longest * 7);
  }

  function draw(name, xs, series) {
    const el = document.getElementById("chart-" + name);
    if (!el) return;
    const labels = series.map((s) => s[0]);
    const data = [xs].concat(series.map((s) => s[1]));
    const chart = state.charts[name];
    if (chart && chart.conveyorLabels === labels.join("\n")) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    el.textContent = "";
    const created = new uPlot(options(name, el, labels), data, el);
    created.conveyorLabels = labels.join("\n");
    state.charts[name] = created;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function figures(now) {
    const set = (name, text) => {
      const el = root.querySelector('[data-figure="' + name + '"]');
      if (el) el.textContent = text;
    };
    set("queued", now.queued);
    set("running", now.running);
    set("paused", now.paused);
    set("oldest_wait", duration(now.oldest_wait_seconds));
    set("workers", now.workers);
    set("clusters", now.clusters.map((c) => c.name + " (" + c.workers + ")").join(", "));
  }

  // The per-kind table: one row per kind, built with text nodes (kind names are data).
  function performance(rows) {
    const body = root.querySelector("#kind-performance tbody");
    if (!body) return;
    const pair = (a, b) => duration(a) + " / " + duration(b);
    const cells = (f) => [
      f.kind, f.finished.toLocaleString(), f.per_minute, f.failure_rate === null ? "–" : f.failure_rate + " %",
      pair(f.duration_p50, f.duration_p95), pair(f.wait_p50, f.wait_p95),
      f.rows_processed.toLocaleString() + " (" + f.rows_failed.toLocaleString() + ")",
      f.tokens.toLocaleString(), f.cost_usd ? "$" + f.cost_usd.toFixed(2) : "–",
    ];
    if (!rows.length) return;
    body.replaceChildren(...rows.map((f) => {
      const tr = document.createElement("tr");
      tr.dataset.kind = f.kind;
      for (const text of cells(f)) tr.appendChild(document.createElement("td")).textContent = text;
      return tr;
    }));
  }

  function render(d) {
    state.data = d;
    performance(d.performance || []);
    for (const [name, series] of Object.entries(CHARTS)) draw(name, d.times, series(d));
    const samples = state.workerSamples;
    samples[0].push(d.generated_at);
    samples[1].push(d.now.workers);
    if (samples[0].length > MAX_WORKER_SAMPLES) { samples[0].shift(); samples[1].shift(); }
    draw("workers", samples[0], [["Workers", samples[1]]]);
    figures(d.now);
    state.updates += 1;
    const updated = document.getElementById("metrics-updated");
    if (updated) updated.textContent = "Updated " + new Date(d.generated_at * 1000).toLocaleTimeString() + ".";
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
    } catch (error) {
      state.errors += 1;
      const updated = document.getElementById("metrics-updated");
      if (updated) updated.textContent = "Could not refresh (" + error.message + "); retrying.";
    }
    setTimeout(refresh, Number(root.dataset.every || 5) * 1000);
  }

  window.addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(state.charts)) {
      const el = document.getElementById("chart-" + name);
      if (el) chart.setSize({ width: chartWidth(el), height: 200 });
    }
  });

  refresh();
})();
