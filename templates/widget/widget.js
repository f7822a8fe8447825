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
  var frame = null, box = null, token = null, expires = 0, loaded = false, current = null;

  var bubble = document.createElement("button");
  bubble.type = "button";
  bubble.setAttribute("aria-label", "Open chat");
  bubble.setAttribute("aria-expanded", "false");
  bubble.setAttribute("data-wizchat", "bubble");
  // An icon drawn here, not an emoji: a system without an emoji font would show an empty box.
  var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "28");
  svg.setAttribute("height", "28");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  path.setAttribute("fill", "currentColor");
  svg.appendChild(path);
  bubble.appendChild(svg);
  bubble.style.cssText = "position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;" +
    "border:0;padding:0;display:flex;align-items:center;justify-content:center;background:#2563eb;color:#fff;" +
    "cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000";

  function session() {
    if (token && Date.now() < expires) return Promise.resolve(token);
    return fetch(base + "/widget/" + chatbot + "/session", {method: "POST", mode: "cors", credentials: "omit"})
      .then(function (r) { if (!r.ok) throw new Error("not allowed"); return r.json(); })
      .then(function (d) { token = d.token; expires = Date.now() + (d.expires_in - 60) * 1000; return token; });
  }

  function open() {
    session().then(function (t) {
      if (box && t !== current) {  // a new session after the last one ran out: the frame starts again with it
        box.parentNode.removeChild(box);
        box = frame = null;
        loaded = false;
      }
      if (!box) {
        current = t;
        box = document.createElement("div");
        box.setAttribute("data-wizchat", "window");
        // Centred with 12px each side on a phone, 20px from the right edge on a wider screen.
        box.style.cssText = "position:fixed;right:min(20px,calc((100vw - min(380px,100vw - 24px)) / 2));" +
          "bottom:88px;width:min(380px,calc(100vw - 24px));" +
          "height:min(560px,calc(100vh - 110px));height:min(560px,calc(100dvh - 110px));" +
          "z-index:2147483000;box-shadow:0 8px 30px rgba(0,0,0,.3);border-radius:12px;overflow:hidden;background:#fff";
        frame = document.createElement("iframe");
        frame.title = "Chat";
        frame.style.cssText = "width:100%;height:100%;border:0";
        frame.addEventListener("load", function () { loaded = true; });
        frame.src = base + "/widget/" + chatbot + "/#" + encodeURIComponent(t);
        box.appendChild(frame);
        document.body.appendChild(box);
      }
      box.style.display = "block";
      bubble.setAttribute("aria-expanded", "true");
      bubble.setAttribute("aria-label", "Close chat");
      frame.focus();
      if (loaded) frame.contentWindow.postMessage("wizchat:focus", base);  // shown again: its question field
    }).catch(function () {
      bubble.setAttribute("aria-label", "Chat is not available on this website");
      bubble.title = "Chat is not available on this website";
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
    if (!frame || e.source !== frame.contentWindow || e.origin !== base) return;
    if (e.data === "wizchat:close") close();
    if (e.data === "wizchat:expired") token = null;  // the next open asks for a new session
  });
  function mount() { document.body.appendChild(bubble); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
