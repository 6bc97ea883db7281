// Conveyor's front-end glue around htmx and its ws extension:
// - mark the page when the live socket is open (tests and the nav dot read it),
// - toasts fade away by themselves,
// - a job row pushed for a job this table doesn't show yet refreshes the table, and
//   so does every (re)opening of the socket: what changed while it was down shows;
// - a pushed fragment keeps the page's own controls when they did not change (a
//   button replaced under the pointer loses the click) and keeps rows ticked;
// - a sheet page shows a job of its sheet started elsewhere.
(function () {
  // Re-read one part of the page (by id) from the server, at most once per 300 ms.
  const rereading = {};
  function reread(id) {
    const part = document.getElementById(id);
    if (!part || rereading[id]) return;
    rereading[id] = setTimeout(() => {
      delete rereading[id];
      const url = part.dataset.refreshUrl || window.location.href;
      htmx.ajax("GET", url, { target: "#" + id, select: "#" + id, swap: "outerHTML" });
    }, 300);
  }
  const refreshJobTable = () => reread("job-table");

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

  // Keep what the user is touching: unchanged controls stay the same elements, and a
  // ticked row stays ticked when its job's row is pushed again.
  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const { target, fragment } = event.detail;
    if (!target || !fragment) return;
    const oldControls = target.querySelector(":scope > .controls");
    const newControls = fragment.querySelector(".controls");
    if (oldControls && newControls && oldControls.outerHTML === newControls.outerHTML) {
      newControls.replaceWith(oldControls);
    }
    const oldBox = target.querySelector('input[name="ids"]');
    const newBox = fragment.querySelector('input[name="ids"]');
    if (oldBox && newBox) newBox.checked = oldBox.checked;
  });

  // A re-read jobs table keeps the rows the user ticked.
  let tickedIds = null;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail && event.detail.target;
    if (!target || target.id !== "job-table") return;
    tickedIds = Array.from(target.querySelectorAll('input[name="ids"]:checked'), (box) => box.value);
  });
  document.addEventListener("htmx:afterSwap", () => {
    if (!tickedIds) return;
    document.querySelectorAll('#job-table input[name="ids"]').forEach((box) => {
      if (tickedIds.includes(box.value)) box.checked = true;
    });
    tickedIds = null;
  });

  document.addEventListener("htmx:wsOpen", () => {
    document.body.dataset.live = "open";
    refreshJobTable();
  });
  document.addEventListener("htmx:wsClose", () => { document.body.dataset.live = "closed"; });

  document.addEventListener("htmx:oobErrorNoTarget", (event) => {
    const target = (event.detail && event.detail.target) || "";
    if (target.startsWith("#job-row-")) refreshJobTable();
    // A sheet page without a job yet: one was started elsewhere (another tab, the API,
    // the command line), so re-read the page's job part to show it live.
    if (target === "#current-job-live") reread("sheet-job");
  });

  document.addEventListener("htmx:oobAfterSwap", () => {
    document.querySelectorAll("#toasts .toast:not([data-timer])").forEach((toast) => {
      toast.dataset.timer = "1";
      setTimeout(() => toast.remove(), 10000);
    });
  });
})();
