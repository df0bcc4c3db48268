// Live pages: one server-sent event stream; on each update, every [data-fragment] element fetches its fresh
// HTML (rendered and escaped by the server) and swaps it in. Pages with plots listen for "orbitwatch:update".
(function () {
  "use strict";
  var badge = document.getElementById("live");
  window.orbitwatchUpdates = [];  // {commits, shownAt}: read by the tests and the benchmark
  var busy = false, pending = null;  // pending: the newest event that arrived during a refresh

  function refresh(detail) {
    if (busy) { pending = detail; return; }
    busy = true;
    var parts = Array.prototype.slice.call(document.querySelectorAll("[data-fragment]"));
    Promise.all(parts.map(function (el) {
      return fetch(el.getAttribute("data-fragment"), {cache: "no-store"}).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      }).then(function (html) { el.innerHTML = html; });
    })).then(function () {
      window.orbitwatchUpdates.push({commits: detail.commits || [], reason: detail.reason, shownAt: Date.now()});
      document.dispatchEvent(new CustomEvent("orbitwatch:update", {detail: detail}));
      badge.textContent = "live · updated " + new Date().toISOString().substring(11, 19) + " UTC";
    }).catch(function (err) {
      badge.textContent = "update failed: " + err.message;
    }).finally(function () {
      busy = false;
      if (pending) { var next = pending; pending = null; refresh(next); }
    });
  }

  if (!window.EventSource) { badge.textContent = "static (no live updates in this browser)"; return; }
  var source = new EventSource("/events");
  source.onopen = function () { badge.textContent = "live"; badge.className = "live on"; };
  source.onerror = function () { badge.textContent = "reconnecting…"; badge.className = "live off"; };
  source.addEventListener("update", function (event) { refresh(JSON.parse(event.data)); });
})();
