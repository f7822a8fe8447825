// Small progressive enhancements; every page works without this file.
// Controls that only work with JavaScript (Test Connection) are hidden until it runs.
document.documentElement.classList.add("js");

// A Test Connection result describes the values it tested: once a field of that component changes, grey
// the result out and say so (saving still checks the exact settings on the server).
document.addEventListener("input", (event) => {
  const fields = event.target.closest(".component-fields");
  const status = fields && fields.querySelector(".test-status");
  if (status && status.querySelector(".test-summary")) {
    status.classList.add("stale");
  }
});
