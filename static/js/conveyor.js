// Conveyor's front-end glue around htmx and its ws extension:
// - mark the page when the live socket is open (tests and the nav dot read it),
// - toasts fade away by themselves and close with their button,
// - a job row pushed for a job this table doesn't show yet refreshes the table, and
//   so does every (re)opening of the socket: what changed while it was down shows;
// - a pushed job row or live section is updated in place (the user may be clicking it);
// - a sheet page shows a job of its sheet started elsewhere; an importing sheet's page
//   shows the sheet once its import job ends;
// - a page listing things whose latest job changes ([data-live-refresh]) re-reads itself;
// - a job that finishes in front of the user marks its notification read (it was seen);
// - the "while you were away" notice closes with its button, and a toast of a job it
//   already lists (pushed as the page opened) is not shown twice;
// - after 2 s without the socket, a "Reconnecting…" banner says live updates paused;
// - a form or link with data-confirm asks its question before it goes (no inline handlers);
// - an htmx GET never puts a typed key or the CSRF token in its URL.
(function () {
  // Re-read one part of the page (by id) from the server, at most once per 300 ms.
  const rereading = {};
  function reread(id, delay) {
    const part = document.getElementById(id);
    if (!part || rereading[id]) return;
    rereading[id] = setTimeout(() => {
      delete rereading[id];
      const url = part.dataset.refreshUrl || window.location.href;
      htmx.ajax("GET", url, { target: "#" + id, select: "#" + id, swap: "outerHTML" });
    }, delay || 300);
  }
  // Parts that show the latest job of something (the sheets list): at most one re-read a second.
  function refreshLiveParts() {
    document.querySelectorAll("[data-live-refresh][id]").forEach((part) => reread(part.id, 1000));
  }
  const refreshJobTable = () => { reread("job-table"); refreshLiveParts(); };

  // A sheet page: its job committed rows, so refresh the results table (at most 1/s),
  // keeping the view the user chose (errors only, order, page) as it is at that moment.
  // A table pinned to a job the user asked for (?job=N, an earlier job) stays on it:
  // only the live panel follows the running job.
  let resultsTimer = null;
  function refreshResults(signal) {
    if (!document.getElementById("results") || resultsTimer) return;
    resultsTimer = setTimeout(() => {
      resultsTimer = null;
      const results = document.getElementById("results");
      if (!results) return;
      const view = results.dataset;
      const live = signal && signal.dataset.job;
      if (view.pinned && live !== view.job) return;
      const job = view.pinned ? view.job : live || view.job;
      const params = new URLSearchParams({ job: job });
      if (view.errors) params.set("errors", view.errors);
      if (view.order) params.set("order", view.order);
      if (view.page && job === view.job) params.set("page", view.page);
      htmx.ajax("GET", view.baseUrl + "?" + params, { target: "#results", swap: "outerHTML" });
    }, 1000);
  }

  document.addEventListener("htmx:oobAfterSwap", (event) => {
    const target = event.detail && event.detail.target;
    if (target && target.id === "results-signal") refreshResults(document.getElementById("results-signal"));
  });
  // A re-read job part (a job started elsewhere) was rendered before the rows committed
  // while it was on its way, whose signals found no results table: read the rows again.
  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail && event.detail.target;
    if (target && target.id === "sheet-job") refreshResults(document.getElementById("results-signal"));
  });

  // The jobs table's header checkbox selects every row on the page.
  document.addEventListener("change", (event) => {
    if (!event.target.matches(".select-all")) return;
    event.target.closest("table").querySelectorAll('input[name="ids"]').forEach((box) => {
      box.checked = event.target.checked;
    });
  });

  // A pushed job row or live section updates the element in place instead of replacing
  // it: a job can push many times a second, and a replaced box or button under the
  // pointer would lose the click (and a ticked box its tick).
  function syncAttributes(old, fresh) {
    for (const { name } of Array.from(old.attributes)) {
      if (!fresh.hasAttribute(name)) old.removeAttribute(name);
    }
    for (const { name, value } of Array.from(fresh.attributes)) {
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
  }

  function morph(old, fresh) {
    if (old.isEqualNode(fresh)) return;
    syncAttributes(old, fresh);
    const oldKids = Array.from(old.childNodes);
    const newKids = Array.from(fresh.childNodes);
    const sameShape = oldKids.length === newKids.length &&
      oldKids.every((kid, i) => kid.nodeName === newKids[i].nodeName);
    if (!sameShape) {
      old.replaceChildren(...newKids);
      return;
    }
    oldKids.forEach((kid, i) => {
      if (kid.nodeType === Node.ELEMENT_NODE) morph(kid, newKids[i]);
      else if (kid.nodeValue !== newKids[i].nodeValue) kid.nodeValue = newKids[i].nodeValue;
    });
  }

  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const { target, fragment } = event.detail;
    const fresh = fragment && fragment.firstElementChild;
    if (!target || !fresh || fresh.id !== target.id || !target.matches(".job-row, .live-job")) return;
    morph(target, fresh);
    htmx.process(target);
    event.detail.shouldSwap = false;
  });

  // A box marked data-swap-errors shows the 4xx answer's message (a form's errors)
  // instead of htmx's default of ignoring error responses.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const { target, xhr } = event.detail;
    if (!target || !target.matches("[data-swap-errors]")) return;
    if (xhr.status >= 400 && xhr.status < 500) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // A GET carries its fields in the URL, which access logs keep: never a password field
  // (an API key typed into the sheet form) nor the CSRF token. Only whether a key was
  // typed goes, as has_<field>=1 (the options notice says "no API key" without one).
  document.addEventListener("htmx:configRequest", (event) => {
    const detail = event.detail;
    if (!detail.useUrlParams) return;
    const form = detail.elt && detail.elt.closest && detail.elt.closest("form");
    delete detail.parameters.csrfmiddlewaretoken;
    document.querySelectorAll('input[type="password"][name]').forEach((field) => {
      delete detail.parameters[field.name];
      if (form && field.form === form && field.value) detail.parameters["has_" + field.name] = "1";
    });
  });

  // A form or link marked data-confirm="question" asks first (the CSP forbids inline
  // onsubmit/onclick handlers, so templates carry the question and this asks it).
  document.addEventListener("submit", (event) => {
    const form = event.target.closest && event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  }, true);
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[data-confirm], button[data-confirm]");
    if (link && !window.confirm(link.dataset.confirm)) event.preventDefault();
  }, true);

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

  // The socket: open, or closed (reconnecting) for more than 2 s, which the banner shows.
  let lostTimer = null;
  function showLost(lost) {
    const banner = document.getElementById("live-lost");
    if (banner) banner.hidden = !lost;
  }
  document.addEventListener("htmx:wsOpen", () => {
    clearTimeout(lostTimer);
    lostTimer = null;
    showLost(false);
    document.body.dataset.live = "open";
    refreshJobTable();
  });
  document.addEventListener("htmx:wsClose", () => {
    if (document.body.dataset.live === "reconnecting") return; // a retry that failed: still lost
    document.body.dataset.live = "closed";
    if (lostTimer) return;
    lostTimer = setTimeout(() => {
      if (document.body.dataset.live === "open") return;
      document.body.dataset.live = "reconnecting";
      showLost(true);
    }, 2000);
  });

  // A toast for a job (or batch) this page shows live: the user saw it finish, so its notification
  // is read (no "completed while you were away" later, no unread badge for it).
  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }
  // A batch's toast likewise, on the batch's page (its live part carries data-batch).
  function shownLive(toast) {
    const { job, batch } = toast.dataset;
    if (job) return document.querySelector('.live-job[data-job="' + job + '"]');
    if (batch) return document.querySelector('.live-job[data-batch="' + batch + '"]');
    return null;
  }
  function markSeen(toast) {
    const id = Number(toast.dataset.notification);
    if (!id || !shownLive(toast)) return;
    fetch("/api/notifications/mark-read/", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ ids: [id] }),
    }).catch(() => {});
  }

  document.addEventListener("htmx:oobErrorNoTarget", (event) => {
    const target = (event.detail && event.detail.target) || "";
    if (target.startsWith("#job-row-")) refreshJobTable();
    // A sheet page without a job yet: one was started elsewhere (another tab, the API,
    // the command line), so re-read the page's job part to show it live.
    if (target === "#current-job-live") reread("sheet-job");
  });

  // Toasts go by themselves after 10 s (not while the pointer or focus is on one) and
  // close at once with their × button (a real button: Tab reaches it, Enter presses it).
  function dismissLater(toast) {
    clearTimeout(toast.conveyorTimer);
    toast.conveyorTimer = setTimeout(() => {
      if (toast.matches(":hover, :focus-within")) dismissLater(toast);
      else toast.remove();
    }, 10000);
  }
  // An importing sheet's page: once its import job ends, show the sheet (or the error).
  const ENDED = ["succeeded", "failed", "cancelled"];
  document.addEventListener("htmx:oobAfterSwap", () => {
    const notice = document.querySelector("[data-reload-when-job-ends]");
    const live = notice && document.getElementById(notice.dataset.reloadWhenJobEnds);
    if (live && ENDED.includes(live.dataset.status)) window.location.reload();
  });
  document.addEventListener("htmx:oobAfterSwap", () => {
    document.querySelectorAll("#toasts .toast:not([data-timer])").forEach((toast) => {
      toast.dataset.timer = "1";
      const listed = toast.dataset.notification &&
        document.querySelector('#away-notices [data-notification="' + toast.dataset.notification + '"]');
      if (listed) {
        toast.remove();
        return;
      }
      markSeen(toast);
      dismissLater(toast);
    });
  });
  document.addEventListener("click", (event) => {
    const close = event.target.closest && event.target.closest(".toast-close");
    if (close) close.closest(".toast").remove();
    const away = event.target.closest && event.target.closest(".away-close");
    if (away) away.closest("#away-notices").remove();
  });
})();
