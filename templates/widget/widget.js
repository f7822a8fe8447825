/* WizChat widget loader. Paste: <script src="{{ base_url }}/widget.js" data-wizchat-chatbot="CHATBOT_ID" async></script>
   Shows a chat bubble; on click, asks WizChat for a short-lived session (only this website's origin, if the chatbot
   allows it, gets one) and opens the chat in an iframe served by WizChat. No key is ever in this page. */
(function () {
  "use strict";
  var base = "{{ base_url|escapejs }}";
  var script = document.currentScript || document.querySelector("script[data-wizchat-chatbot]");
  if (!script) return;
  var chatbot = script.getAttribute("data-wizchat-chatbot") || "";
  if (!/^[0-9a-fA-F-]{32,36}$/.test(chatbot)) return;
  var frame = null, box = null, token = null, expires = 0;

  var bubble = document.createElement("button");
  bubble.type = "button";
  bubble.setAttribute("aria-label", "Open chat");
  bubble.setAttribute("aria-expanded", "false");
  bubble.setAttribute("data-wizchat", "bubble");
  bubble.textContent = "\u{1F4AC}";
  bubble.style.cssText = "position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;" +
    "border:0;background:#2563eb;color:#fff;font-size:26px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);" +
    "z-index:2147483000";

  function session() {
    if (token && Date.now() < expires) return Promise.resolve(token);
    return fetch(base + "/widget/" + chatbot + "/session", {method: "POST", mode: "cors", credentials: "omit"})
      .then(function (r) { if (!r.ok) throw new Error("not allowed"); return r.json(); })
      .then(function (d) { token = d.token; expires = Date.now() + (d.expires_in - 60) * 1000; return token; });
  }

  function open() {
    session().then(function (t) {
      if (!box) {
        box = document.createElement("div");
        box.setAttribute("data-wizchat", "window");
        box.style.cssText = "position:fixed;right:20px;bottom:88px;width:min(380px,calc(100vw - 24px));" +
          "height:min(560px,calc(100vh - 110px));z-index:2147483000;box-shadow:0 8px 30px rgba(0,0,0,.3);" +
          "border-radius:12px;overflow:hidden;background:#fff";
        frame = document.createElement("iframe");
        frame.title = "Chat";
        frame.style.cssText = "width:100%;height:100%;border:0";
        frame.src = base + "/widget/" + chatbot + "/#" + encodeURIComponent(t);
        box.appendChild(frame);
        document.body.appendChild(box);
      }
      box.style.display = "block";
      bubble.setAttribute("aria-expanded", "true");
      bubble.setAttribute("aria-label", "Close chat");
      frame.focus();
    }).catch(function () {
      bubble.setAttribute("aria-label", "Chat is not available on this website");
      bubble.disabled = true;
      bubble.style.opacity = "0.5";
    });
  }

  function close() {
    if (box) box.style.display = "none";
    bubble.setAttribute("aria-expanded", "false");
    bubble.setAttribute("aria-label", "Open chat");
    bubble.focus();
  }

  bubble.addEventListener("click", function () {
    if (box && box.style.display !== "none") close(); else open();
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && box && box.style.display !== "none") close();
  });
  window.addEventListener("message", function (e) {
    if (e.origin === base && e.data === "wizchat:close") close();
  });
  function mount() { document.body.appendChild(bubble); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
