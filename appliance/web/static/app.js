// Outpost UI helpers. No inline script is allowed by the CSP, so behaviour lives here.
// htmx requests carry the CSRF token from the sign-out form (every signed-in page has it).
document.addEventListener("htmx:configRequest", function (event) {
  var field = document.querySelector('input[name="_csrf"]');
  if (field) { event.detail.headers["X-CSRF-Token"] = field.value; }
});
// Pages are no-store; if a browser still restores one from its back/forward cache, reload it
// so the server decides (a signed-out user then sees the sign-in page, nothing private).
window.addEventListener("pageshow", function (event) {
  if (event.persisted) { window.location.reload(); }
});
