/* The chat inside the widget's iframe: streams answers from the public API with the session token the loader
   put in the URL fragment (never sent to a server in a URL, removed from the address at once). */
(function () {
  "use strict";
  var root = document.querySelector(".wz");
  if (!root) return;
  var token = decodeURIComponent(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  var model = root.getAttribute("data-model");
  var log = root.querySelector(".wz-log");
  var form = root.querySelector(".wz-form");
  var input = form.querySelector("textarea");
  var send = form.querySelector("button");
  var turns = [];
  var EXPIRED = "This chat session has ended. Close the chat and open it again to continue.";
  var conversation = (self.crypto && crypto.randomUUID) ? crypto.randomUUID() : null;

  function item(cls, text) {
    var li = document.createElement("li");
    li.className = cls;
    li.textContent = text;
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
    return li;
  }

  function sources(li, list) {
    if (!list || !list.length) return;
    var box = document.createElement("div");
    box.className = "wz-src";
    var label = document.createElement("span");
    label.className = "wz-src-label";
    label.textContent = "Sources";
    var ol = document.createElement("ol");
    ol.className = "wz-sources";
    ol.setAttribute("aria-label", "Sources");
    box.appendChild(label);
    box.appendChild(ol);
    list.forEach(function (s) {
      var x = document.createElement("li");
      x.textContent = s.title;
      x.title = s.snippet || "";
      ol.appendChild(x);
    });
    li.appendChild(box);
  }

  function ask(question) {
    item("user", question);
    var li = item("assistant", "…");
    var answer = "";
    send.disabled = true;
    log.setAttribute("aria-busy", "true");  // a screen reader reads the answer once, not token by token
    var body = {model: model, stream: true, messages: turns.concat([{role: "user", content: question}])};
    if (conversation) body.conversation_id = conversation;
    fetch("../../v1/chat/completions", {
      method: "POST", credentials: "omit",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.status === 401) {  // the session ran out (or the website was taken off the list)
        parent.postMessage("wizchat:expired", "*");
        throw new Error(EXPIRED);
      }
      if (!r.ok) {
        return r.json().catch(function () { return {}; }).then(function (e) {
          throw new Error((e.error && e.error.message) || "The chat could not answer (error " + r.status + "). " +
                          "Try again in a moment.");
        });
      }
      var reader = r.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) return;
          buffer += decoder.decode(step.value, {stream: true});
          var parts = buffer.split("\n\n");
          buffer = parts.pop();
          parts.forEach(function (part) {
            var data = part.replace(/^data: /, "");
            if (data === "[DONE]") return;
            var chunk = JSON.parse(data);
            if (chunk.error) throw new Error(chunk.error.message);
            var c = chunk.choices && chunk.choices[0];
            if (c && c.delta && c.delta.content) { answer += c.delta.content; li.textContent = answer; }
            if (chunk.wizchat) sources(li, chunk.wizchat.sources);
            log.scrollTop = log.scrollHeight;
          });
          return pump();
        });
      }
      return pump();
    }).then(function () {
      turns.push({role: "user", content: question}, {role: "assistant", content: answer});
    }).catch(function (e) {
      li.className = "error";
      // fetch's own TypeError ("Failed to fetch") means no answer at all, not a message for a visitor.
      li.textContent = e instanceof TypeError ? "The chat could not be reached. Check your connection and try " +
        "again." : e.message;
    }).then(function () {
      log.setAttribute("aria-busy", "false");
      send.disabled = false;
      input.focus();
    });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = input.value.trim();
    if (!q || send.disabled) return;
    input.value = "";
    ask(q);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  function close() { parent.postMessage("wizchat:close", "*"); }  // nothing secret: the page closes the window
  root.querySelector(".wz-close").addEventListener("click", close);
  // Escape pressed inside the frame never reaches the page's own listener.
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
  // Hidden and shown again, the frame has lost its focused field: the loader asks for it back (harmless to anyone).
  window.addEventListener("message", function (e) {
    if (e.source === parent && e.data === "wizchat:focus") input.focus();
  });
  input.disabled = false;  // ready: the page rendered both disabled so nothing typed before this is lost
  send.disabled = false;
  input.focus();
})();
