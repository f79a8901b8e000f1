// resurgo's dashboard, live: the page follows its site's event stream (server-sent events) and
// fetches its live part again when an event arrives, and every few seconds for what other
// sites' agents see. The page reads the same without this script; nothing here acts.
(function () {
  "use strict";
  var body = document.body;
  var live = document.getElementById("live");
  var panel = document.getElementById("panel");
  var events = document.getElementById("events");
  var refreshUrl = body.getAttribute("data-refresh");
  var timer = null;
  var busy = false;

  function mark(text, cls) {
    if (live) {
      live.textContent = text;
      live.className = "live " + cls;
    }
  }

  function refresh() {
    if (!refreshUrl || !panel || timer !== null) return;
    timer = setTimeout(function () {
      timer = null;
      if (busy) return;
      busy = true;
      fetch(refreshUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          busy = false;
          if (html === null) return;
          panel.innerHTML = html;
          body.setAttribute("data-updates", String(Number(body.getAttribute("data-updates") || "0") + 1));
        })
        .catch(function () { busy = false; mark("offline", "off"); });
    }, 200);
  }

  function show(event) {
    if (!events) return;
    var li = document.createElement("li");
    var where = [event.site, event.service, event.dataset].filter(Boolean).join(" ");
    li.textContent = (event.time || "") + "  " + (event.kind || "") + (where ? "  " + where : "") + "  " + (event.message || "");
    if (event.trouble) li.className = "trouble";
    events.insertBefore(li, events.firstChild);
    while (events.children.length > 50) events.removeChild(events.lastChild);
  }

  if (window.EventSource && refreshUrl) {
    var source = new EventSource("/ui/events");
    source.onopen = function () { mark("live", "on"); };
    source.onerror = function () { mark("reconnecting", "off"); };
    source.onmessage = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      show(event);
      refresh();
    };
    window.addEventListener("pagehide", function () { source.close(); });
  }
  if (refreshUrl) setInterval(refresh, 5000);
})();
