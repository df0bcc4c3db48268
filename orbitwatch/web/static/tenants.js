// GPU-hours per tenant as stacked bars (Plotly from the installed plotly package).
(function () {
  "use strict";
  var rows = JSON.parse(document.getElementById("tenant-data").textContent);
  function text(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  var tenants = {};
  rows.forEach(function (r) {
    var t = tenants[r.tenant] || (tenants[r.tenant] = {x: [], y: [], name: text(r.tenant), type: "bar"});
    t.x.push(r.period); t.y.push(r.gpu_hours);
  });
  Plotly.newPlot("plot-tenants", Object.keys(tenants).sort().map(function (k) { return tenants[k]; }), {
    barmode: "stack", margin: {l: 55, r: 15, t: 10, b: 40}, yaxis: {title: {text: "GPU-hours"}},
    legend: {orientation: "h"}, paper_bgcolor: "rgba(0,0,0,0)"
  }, {displaylogo: false, responsive: true});
})();
