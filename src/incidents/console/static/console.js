// Live updates for the console's pages. A page marks the part that changes with
// data-live-url (that part, rendered by the server, escaped) and data-stream (the
// /v1/stream query it depends on). Any event on the stream fetches the part again;
// while the stream is not reachable the part is fetched every second instead.
// The part says how it is kept up to date: data-stream-state is "open" while the stream
// is connected and "polling" otherwise; data-updated-by names what fetched its last change.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-live-url");
  var streamUrl = live.getAttribute("data-stream");
  var types = ["im.incident.declare", "im.incident.ack", "im.incident.mitigate",
    "im.incident.resolve", "im.incident.close", "im.incident.note",
    "im.incident.state_change", "im.incident.role_assign", "im.alert.trigger",
    "im.alert.ack", "im.alert.resolve"];
  var pending = null;
  var polling = null;

  function refresh(by) {
    pending = null;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== live.innerHTML) {
          live.innerHTML = html;  // the server's own escaped HTML, from this origin
          live.setAttribute("data-updated", String(Date.now()));
          live.setAttribute("data-updated-by", by);
        }
      })
      .catch(function () { /* the next event or poll tries again */ });
  }

  function soon() {
    if (pending === null) { pending = window.setTimeout(refresh, 100, "stream"); }
  }

  function poll(every) {
    if (polling !== null) { window.clearInterval(polling); }
    polling = window.setInterval(refresh, every, "poll");
  }

  if (streamUrl && window.EventSource) {
    var source = new EventSource(streamUrl, { withCredentials: true });
    source.onopen = function () {
      live.setAttribute("data-stream-state", "open");
      poll(15000);
      soon();  // what happened between the page's rendering and the stream's opening
    };
    source.onmessage = soon;
    types.forEach(function (t) { source.addEventListener(t, soon); });
    source.onerror = function () {
      // reconnecting (or given up): poll every second until the stream is open again
      if (source.readyState !== EventSource.OPEN) {
        live.setAttribute("data-stream-state", "polling");
        poll(1000);
      }
    };
  }
  live.setAttribute("data-stream-state", "polling");
  poll(1000);
})();
