// Swagger UI over the gateway's own OpenAPI document (same origin, the console's session cookie):
// a file rather than an inline script, so the console's Content-Security-Policy needs no 'unsafe-inline'.
// The packaged Swagger UI (swagger-ui-bundle 1.1.0: Swagger UI 4.15) refuses documents labelled
// OpenAPI 3.1, which FastAPI writes; the gateway's document uses the 3.0 subset (plus 3.1's null
// types, which 4.15 shows as plain types), so the page shows it labelled 3.0. /openapi.json itself
// is served unchanged.
fetch("/openapi.json", { credentials: "same-origin" })
  .then((response) => response.json())
  .then((spec) => {
    spec.openapi = "3.0.3";
    window.ui = SwaggerUIBundle({ spec: spec, dom_id: "#swagger-ui", deepLinking: true });
  });
