// Conveyor's shared page glue. The markup says what each part does with htmx (hx-get,
// hx-trigger, hx-swap-oob="morph" via idiomorph, htmx-config for error answers); this
// file holds what htmx has no attribute for (a page's own logic is its app's script):
// - the socket's state on <body data-live> (tests and the nav dot read it) and, after 2 s
//   without it, the "Reconnecting…" banner;
// - a pushed job a page does not show yet re-reads its [data-reread] parts, at most once
//   per their data-reread ms and after the last push too (htmx's throttle drops what comes
//   inside its window, and the last push is often the job's end);
// - a morph keeps the boxes the user ticked;
// - a toast is not shown twice for a job the "while you were away" notice lists, marks its
//   notification read when the page shows its job live, and closes with its button (it
//   fades by itself: conveyor.css); the notice closes with its own;
// - a form or link with data-confirm asks its question first (no inline handlers);
// - a POST form the relay pushed (one copy rendered for every viewer, so without a CSRF
//   token: a paused job's resume form) gets the page's token when it is sent;
// - a change the server refuses (a 409: the job moved on meanwhile) or cannot answer says
//   why in the alert above the page (#request-error), not nothing; the next change that
//   goes through hides it;
// - an htmx GET never puts a typed key or the CSRF token in its URL;
// - a job table's header checkbox ticks every row.
(function () {
  "use strict";
  const waiting = new Set();
  function reread(part, ms) {
    if (waiting.has(part)) return;
    waiting.add(part);
    setTimeout(() => waiting.delete(part) && htmx.trigger(part, "reread"), ms);
  }
  window.conveyor = { reread };

  document.addEventListener("htmx:oobErrorNoTarget", (event) => {
    if (!String(event.detail.target).startsWith("#job-row-")) return;
    document.querySelectorAll("[data-reread]").forEach((part) => reread(part, +part.dataset.reread));
  });
  Idiomorph.defaults.callbacks.beforeAttributeUpdated = (name) => name !== "checked";

  let lostTimer = null;
  function setLive(state) {
    document.body.dataset.live = state;
    const banner = document.getElementById("live-lost");
    if (banner) banner.hidden = state !== "reconnecting";
  }
  document.addEventListener("htmx:wsOpen", () => {
    clearTimeout(lostTimer);
    lostTimer = null;
    setLive("open");
  });
  document.addEventListener("htmx:wsClose", () => {
    if (document.body.dataset.live === "reconnecting" || lostTimer) return; // still lost
    setLive("closed");
    lostTimer = setTimeout(() => setLive("reconnecting"), 2000);
  });

  const csrfToken = () => JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  function shownLive({ job, batch }) {
    return (job && document.querySelector(`.live-job[data-job="${job}"]`)) ||
      (batch && document.querySelector(`.live-job[data-batch="${batch}"]`));
  }
  htmx.onLoad((toast) => {
    if (!toast.matches(".toast[data-notification]")) return;
    const id = toast.dataset.notification;
    if (document.querySelector(`#away-notices [data-notification="${id}"]`)) toast.remove();
    else if (shownLive(toast.dataset)) {
      const headers = { "Content-Type": "application/json", "X-CSRFToken": csrfToken() };
      const body = JSON.stringify({ ids: [Number(id)] });
      fetch("/api/notifications/mark-read/", { method: "POST", headers, body }).catch(() => {});
    }
  });
  document.addEventListener("animationend", (event) => {
    if (event.animationName === "toast-life") event.target.remove();
  });

  document.addEventListener("click", (event) => {
    const asked = event.target.closest("a[data-confirm], button[data-confirm]");
    if (asked && !window.confirm(asked.dataset.confirm)) event.preventDefault();
    const close = event.target.closest(".toast-close, .away-close");
    if (close) close.closest(".toast, #away-notices").remove();
  }, true);
  document.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  }, true);

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.method !== "post" || form.elements.csrfmiddlewaretoken) return;
    if (new URL(form.action, location.href).origin !== location.origin) return;
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrfmiddlewaretoken";
    token.value = csrfToken();
    form.append(token);
  });

  function sayRefused(text) {
    const alert = document.getElementById("request-error");
    if (!alert) return;
    alert.querySelector(".message").textContent = text;
    alert.hidden = !text;
  }
  const isChange = (event) => event.detail.requestConfig.verb !== "get";
  document.addEventListener("htmx:responseError", (event) => {
    if (!isChange(event)) return; // a background refresh tries again by itself
    const xhr = event.detail.xhr;
    const plain = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain");
    sayRefused(plain && xhr.responseText.length <= 500 ? xhr.responseText.trim()
      : `The server answered ${xhr.status} ${xhr.statusText}: reload the page to see where things stand.`);
  });
  document.addEventListener("htmx:sendError", (event) => {
    if (isChange(event)) sayRefused("The server could not be reached: nothing was sent. Try again in a moment.");
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    if (isChange(event) && event.detail.successful) sayRefused("");
  });

  document.addEventListener("htmx:configRequest", (event) => {
    const detail = event.detail;
    if (!detail.useUrlParams) return;
    const form = detail.elt.closest && detail.elt.closest("form");
    delete detail.parameters.csrfmiddlewaretoken;
    document.querySelectorAll('input[type="password"][name]').forEach((field) => {
      delete detail.parameters[field.name];
      if (form && field.form === form && field.value) detail.parameters["has_" + field.name] = "1";
    });
  });

  document.addEventListener("change", (event) => {
    if (!event.target.matches(".select-all")) return;
    event.target.closest("table").querySelectorAll('input[name="ids"]').forEach((box) => {
      box.checked = event.target.checked;
    });
  });
})();
