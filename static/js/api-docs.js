// The API docs page (/api/docs/): Swagger UI on /api/openapi.json, from static files
// (no inline script: the CSP allows only 'self'). "Try it out" runs with the page's
// session, so unsafe methods carry the CSRF token as the API asks of sessions.
(function () {
  "use strict";
  function start() {
    var node = document.getElementById("swagger-ui");
    if (!node || typeof window.SwaggerUIBundle !== "function") return;
    var csrf = node.dataset.csrfToken;
    window.SwaggerUIBundle({
      url: node.dataset.schemaUrl,
      domNode: node,
      deepLinking: true,
      validatorUrl: null,
      requestInterceptor: function (request) {
        if (!/^(GET|HEAD|OPTIONS)$/i.test(request.method || "GET")) {
          request.headers["X-CSRFToken"] = csrf;
        }
        return request;
      },
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
