// Conveyor's front-end glue around htmx and its ws extension:
// - mark the page when the live socket is open (tests and the nav dot read it),
// - toasts fade away by themselves,
// - a job row pushed for a job this table doesn't show yet refreshes the table.
(function () {
  let refreshTimer = null;

  function refreshJobTable() {
    const table = document.getElementById("job-table");
    if (!table || refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      const url = table.dataset.refreshUrl || window.location.href;
      htmx.ajax("GET", url, { target: "#job-table", select: "#job-table", swap: "outerHTML" });
    }, 300);
  }

  // A sheet page: its job committed rows, so refresh the results table (at most 1/s).
  let resultsTimer = null;
  function refreshResults(signal) {
    const results = document.getElementById("results");
    if (!results || resultsTimer) return;
    resultsTimer = setTimeout(() => {
      resultsTimer = null;
      const params = new URLSearchParams({ job: signal.dataset.job || results.dataset.job });
      if (results.dataset.errors) params.set("errors", "1");
      htmx.ajax("GET", results.dataset.baseUrl + "?" + params, { target: "#results", swap: "outerHTML" });
    }, 1000);
  }

  document.addEventListener("htmx:oobAfterSwap", (event) => {
    const target = event.detail && event.detail.target;
    if (target && target.id === "results-signal") refreshResults(document.getElementById("results-signal"));
  });

  // The jobs table's header checkbox selects every row on the page.
  document.addEventListener("change", (event) => {
    if (!event.target.matches(".select-all")) return;
    event.target.closest("table").querySelectorAll('input[name="ids"]').forEach((box) => {
      box.checked = event.target.checked;
    });
  });

  document.addEventListener("htmx:wsOpen", () => { document.body.dataset.live = "open"; });
  document.addEventListener("htmx:wsClose", () => { document.body.dataset.live = "closed"; });

  document.addEventListener("htmx:oobErrorNoTarget", (event) => {
    const target = (event.detail && event.detail.target) || "";
    if (target.startsWith("#job-row-")) refreshJobTable();
  });

  document.addEventListener("htmx:oobAfterSwap", () => {
    document.querySelectorAll("#toasts .toast:not([data-timer])").forEach((toast) => {
      toast.dataset.timer = "1";
      setTimeout(() => toast.remove(), 10000);
    });
  });
})();
