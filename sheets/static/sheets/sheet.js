// The sheet pages' script (sheets/sheet_detail.html, sheets/sheet_importing.html), beside
// the shared static/js/conveyor.js:
// - the results table follows the sheet's job: each pushed results signal re-reads it, at
//   most once a second and after the last push too, in the view the user chose (errors
//   only, order, page); a table pinned to an earlier job (?job=N) stays on it;
// - a job of the sheet started elsewhere shows live (the job part re-reads itself: its
//   hx-trigger), and then its results;
// - an importing sheet's page shows the sheet once its import job ends.
(function () {
  "use strict";

  const ENDED = ["succeeded", "failed", "cancelled"];
  const liveJob = () => (document.getElementById("results-signal") || { dataset: {} }).dataset.job;

  function followResults() {
    const results = document.getElementById("results");
    if (!results || (results.dataset.pinned && liveJob() !== results.dataset.job)) return;
    conveyor.reread(results, 1000);
  }

  // The re-read asks for the rows of the job the table follows, in the view it shows now.
  document.addEventListener("htmx:configRequest", (event) => {
    const results = event.detail.elt;
    if (results.id !== "results") return;
    const view = results.dataset;
    const job = view.pinned ? view.job : liveJob() || view.job;
    const params = new URLSearchParams({ job: job });
    if (view.errors) params.set("errors", view.errors);
    if (view.order) params.set("order", view.order);
    if (view.page && job === view.job) params.set("page", view.page);
    event.detail.path = view.baseUrl + "?" + params;
  });

  document.addEventListener("htmx:oobAfterSwap", (event) => {
    if (event.detail.target.id === "results-signal") followResults();
    const notice = document.querySelector("[data-reload-when-job-ends]");
    const live = notice && document.getElementById(notice.dataset.reloadWhenJobEnds);
    if (live && ENDED.includes(live.dataset.status)) window.location.reload();
  });

  // A job part re-read (a job started elsewhere) may have been rendered before rows its
  // signals announced were committed: read the rows again.
  htmx.onLoad((part) => {
    if (part.id === "sheet-job") followResults();
  });
})();
