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

// Switching a BYOI component (or "Enable BYOI") off and on again re-renders its fields from the server, which
// never received what was typed into fields that were no longer on the page. Remember, for the life of the page,
// what the user typed and which components they switched on, and put it back when the fields return.
const typed = new Map();
const switchedOn = new Set();

function remember(event) {
  const input = event.target;
  if (!input.name) {
    return;
  }
  if (input.closest(".component-fields")) {
    typed.set(input.name, input.type === "checkbox" ? input.checked : input.value);
  } else if (input.matches(".byoi-component > legend input[role=switch]")) {
    if (input.checked) switchedOn.add(input.id); else switchedOn.delete(input.id);
  }
}
document.addEventListener("input", remember);
document.addEventListener("change", remember);
document.addEventListener("DOMContentLoaded", () => {  // what the page was served with counts as typed
  const served = ".component-fields [name], .byoi-component > legend input[role=switch]";
  document.querySelectorAll(served).forEach((input) => remember({ target: input }));
});

document.addEventListener("htmx:afterSettle", (event) => {
  const swapped = event.target;
  if (swapped.id === "byoi-panel") {
    for (const id of switchedOn) {
      const componentSwitch = document.getElementById(id);
      if (componentSwitch && !componentSwitch.checked) {
        componentSwitch.checked = true;
        componentSwitch.dispatchEvent(new Event("change", { bubbles: true }));  // htmx fetches its fields
      }
    }
  }
  if (swapped.querySelectorAll) {
    for (const input of swapped.querySelectorAll(".component-fields [name]")) {
      if (!typed.has(input.name)) continue;
      if (input.type === "checkbox") input.checked = typed.get(input.name); else input.value = typed.get(input.name);
    }
  }
});

// Copy buttons (the new API key, the widget snippet): the value stays in the page only.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  if (!field) return;
  field.select();
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 2000); };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done, done);
  else { document.execCommand("copy"); done(); }
});
