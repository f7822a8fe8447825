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

// A finished Test Connection result is kept, for the life of the page, with the values it tested: when the
// component's fields come back (its switch or "Enable BYOI" flipped off and on) with the same values, so does the
// result, instead of "Not tested yet" or the saved settings' older status.
const results = new Map();  // fields id -> {html, values}
const testing = new Map();  // fields id -> values when Test Connection was clicked

function fieldValues(fields) {
  return JSON.stringify(Array.from(fields.querySelectorAll("[name]"), (input) =>
    [input.name, input.type === "checkbox" ? input.checked : input.value]));
}

document.addEventListener("htmx:beforeRequest", (event) => {
  const button = event.target.closest && event.target.closest(".test-button");
  const fields = button && button.closest(".component-fields");
  if (fields) testing.set(fields.id, fieldValues(fields));
});

function keepResult(status) {
  const fields = status.closest(".component-fields");
  if (!fields || !testing.has(fields.id) || status.hasAttribute("hx-get") || !status.querySelector(".test-summary")) {
    return;
  }
  results.set(fields.id, { html: status.outerHTML, values: testing.get(fields.id) });
}

function restoreResult(fields) {
  const kept = results.get(fields.id);
  const status = fields.querySelector(".test-status");
  if (kept && status && kept.values === fieldValues(fields)) status.outerHTML = kept.html;
}

document.addEventListener("htmx:afterSettle", (event) => {
  const swapped = event.target;
  if (swapped.classList && swapped.classList.contains("test-status")) keepResult(swapped);
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
    const sections = swapped.matches(".component-fields") ? [swapped] : swapped.querySelectorAll(".component-fields");
    sections.forEach(restoreResult);
  }
});

// A form that came back with errors: the summary at the top takes the focus (screen readers read it, the page
// scrolls to it), and each of its links puts the cursor in the field it names.
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
    summary.scrollIntoView({ block: "start" });
  }
});
document.addEventListener("click", (event) => {
  const link = event.target.closest(".error-summary a[href^='#']");
  if (!link) return;
  const field = document.getElementById(decodeURIComponent(link.hash.slice(1)));
  if (!field) return;
  event.preventDefault();
  field.scrollIntoView({ block: "center" });
  field.focus({ preventScroll: true });
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

// The chat card (chatbots/partials/_chat.html): the answer streams as server-sent events; without this script
// the form posts and the page comes back with the whole answer.
(function () {
  if (window.wizchatChatReady || !window.fetch || !window.TextDecoder) return;
  window.wizchatChatReady = true;
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }
  function render(out, ev, data, state) {
    if (ev === "meta") { state.form.elements.conversation_id.value = data.conversation_id; document.getElementById("chat-new").hidden = false; }
    else if (ev === "token") { state.answer.textContent += data.text; }
    else if (ev === "sources" && data.sources.length) {
      var box = el("div", "chat-sources"); box.appendChild(el("h3", null, "Sources")); var ol = el("ol");
      data.sources.forEach(function (s) { var li = el("li"); li.appendChild(el("strong", null, s.title)); li.appendChild(document.createTextNode(" — ")); li.appendChild(el("span", "muted", s.snippet)); ol.appendChild(li); });
      box.appendChild(ol); out.appendChild(box);
    } else if (ev === "error") {
      if (!state.answer.textContent) state.answer.remove();  // no empty "…" answer above the error
      var a = el("div", "alert error"); a.setAttribute("role", "alert"); a.appendChild(el("strong", null, data.message));
      if (data.hint) { a.appendChild(el("br")); a.appendChild(document.createTextNode(data.hint)); } out.appendChild(a);
    } else if (ev === "done") {
      if (data.stored === "queued") out.appendChild(el("p", "help", "Your conversations database is unreachable: this exchange is queued and will be saved when it is back."));
      if (window.htmx) htmx.trigger(document.body, "wizchat:refresh");
    }
  }
  document.addEventListener("submit", function (e) {
    var form = e.target; if (form.id !== "chat-form") return;
    e.preventDefault();
    var out = document.getElementById("chat-output"), button = form.querySelector("button[type=submit]");
    out.textContent = ""; var answer = el("div", "chat-answer pre"); out.appendChild(answer);
    var state = {form: form, answer: answer}; button.disabled = true;
    fetch(form.action, {method: "POST", body: new FormData(form), headers: {"Accept": "text/event-stream"}, credentials: "same-origin"})
      .then(function (resp) {
        if (!resp.ok || !resp.body) throw new Error("The server answered " + resp.status + ".");
        var reader = resp.body.getReader(), decoder = new TextDecoder(), buffer = "";
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) return;
            buffer += decoder.decode(r.value, {stream: true});
            var parts = buffer.split("\n\n"); buffer = parts.pop();
            parts.forEach(function (block) {
              var ev = "message", data = "";
              block.split("\n").forEach(function (line) { if (line.indexOf("event: ") === 0) ev = line.slice(7); else if (line.indexOf("data: ") === 0) data += line.slice(6); });
              if (data) render(out, ev, JSON.parse(data), state);
            });
            return pump();
          });
        }
        return pump();
      })
      .catch(function (err) { render(out, "error", {message: "The answer could not be loaded: " + err.message, hint: "Check your connection and ask again."}, state); })
      .finally(function () { button.disabled = false; });
  });
  document.addEventListener("click", function (e) {
    if (e.target.id !== "chat-new") return;
    var form = document.getElementById("chat-form"); form.elements.conversation_id.value = ""; e.target.hidden = true;
    document.getElementById("chat-output").textContent = "";
  });
})();
