// valet hub: the live activity feed and the disconnect confirmation. The
// CSP allows scripts from the hub only, so this file is all there is.
"use strict";

(function () {
  // Ask before a destructive form is sent.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      e.preventDefault();
    }
  });

  var list = document.getElementById("activity");
  if (!list) {
    return;
  }
  var empty = document.getElementById("activity-empty");
  var src = list.getAttribute("data-src");
  var every = 4000;

  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text; // never innerHTML: summaries come from the helpdesk
    return s;
  }

  function render(items) {
    var frag = document.createDocumentFragment();
    items.forEach(function (a) {
      var li = document.createElement("li");
      li.setAttribute("data-id", String(a.id));
      li.appendChild(span("when", a.received));
      li.appendChild(span("account", a.account));
      li.appendChild(span("type", a.event_type));
      li.appendChild(span("summary", a.summary));
      li.appendChild(span("via", a.via));
      frag.appendChild(li);
    });
    list.replaceChildren(frag);
    if (empty) {
      empty.hidden = items.length > 0;
    }
  }

  function poll() {
    fetch(src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (res.status === 401) {
          throw new Error("signed out");
        }
        return res.ok ? res.json() : null;
      })
      .then(function (body) {
        if (body && body.activity) {
          render(body.activity);
        }
        window.setTimeout(poll, every);
      })
      .catch(function (err) {
        // Signed out: stop. A network blip: try again later.
        if (String(err && err.message) !== "signed out") {
          window.setTimeout(poll, every * 3);
        }
      });
  }

  window.setTimeout(poll, every);
})();
