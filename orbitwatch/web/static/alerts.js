// Acknowledge, shelve and their undos from the alerts page: POST /api/alerts/<action> (JSON), applied by the
// shard's daemon like `orbitwatch alerts`, recorded in alert_audit with the operator's name.
(function () {
  "use strict";
  var operator = document.getElementById("operator");
  var token = document.getElementById("token");
  var result = document.getElementById("action-result");
  operator.value = localStorage.getItem("orbitwatch.operator") || "";
  if (token) { token.value = sessionStorage.getItem("orbitwatch.token") || ""; }
  operator.addEventListener("change", function () { localStorage.setItem("orbitwatch.operator", operator.value); });
  if (token) { token.addEventListener("change", function () { sessionStorage.setItem("orbitwatch.token", token.value); }); }

  document.getElementById("alerts").addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var row = button.closest("tr");
    if (!operator.value.trim()) { result.textContent = "enter your name first: the audit records who acted"; operator.focus(); return; }
    var headers = {"Content-Type": "application/json"};
    if (token && token.value) { headers.Authorization = "Bearer " + token.value; }
    var action = button.getAttribute("data-action");
    button.disabled = true;
    result.textContent = action + "…";
    fetch("/api/alerts/" + action, {method: "POST", headers: headers, body: JSON.stringify({
      fingerprint: row.getAttribute("data-fingerprint"), shard: Number(row.getAttribute("data-shard")),
      requested_by: operator.value, minutes: Number(document.getElementById("minutes").value)
    })}).then(function (r) {
      return r.json().then(function (body) { return {ok: r.ok, body: body}; });
    }).then(function (answer) {
      result.textContent = answer.ok ? answer.body.outcome + ": " + answer.body.detail : "refused: " + answer.body.message;
      result.className = answer.ok ? "ok" : "refused";
    }).catch(function (err) {
      result.textContent = "failed: " + err.message; result.className = "refused";
    }).finally(function () { button.disabled = false; });
  });
})();
