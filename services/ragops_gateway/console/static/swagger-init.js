// Swagger UI over the gateway's own OpenAPI document (same origin, the console's session cookie):
// a file rather than an inline script, so the console's Content-Security-Policy needs no 'unsafe-inline'.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
