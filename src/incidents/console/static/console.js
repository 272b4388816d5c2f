// Live updates for the console's pages. A page marks the part that changes with
// data-live-url (that part, rendered by the server, escaped) and data-stream (the
// /v1/stream query it depends on). Any event on the stream fetches the part again;
// while the stream is not reachable the part is fetched every second instead.
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

  function refresh() {
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
        }
      })
      .catch(function () { /* the next event or poll tries again */ });
  }

  function soon() {
    if (pending === null) { pending = window.setTimeout(refresh, 100); }
  }

  function poll(every) {
    if (polling !== null) { window.clearInterval(polling); }
    polling = window.setInterval(refresh, every);
  }

  if (streamUrl && window.EventSource) {
    var source = new EventSource(streamUrl, { withCredentials: true });
    source.onopen = function () { poll(15000); };
    source.onmessage = soon;
    types.forEach(function (t) { source.addEventListener(t, soon); });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { poll(1000); }
    };
  }
  poll(1000);
})();
