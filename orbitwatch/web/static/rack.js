// The rack page's plots (Plotly, served from the installed plotly package). Data: /api/rack as JSON.
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("rack-data").textContent);
  var STATE_NUM = {ok: 0, degraded: 1, critical: 2, unknown: -1};
  var COLORS = {ok: "#2e7d32", degraded: "#f9a825", critical: "#c62828", unknown: "#9e9e9e"};
  var layoutBase = {margin: {l: 55, r: 15, t: 28, b: 30}, showlegend: true, legend: {orientation: "h", y: 1.18},
                    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafafa"};
  var config = {displaylogo: false, responsive: true};
  var last = null;

  function text(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }

  // Minute rows -> x/y with a null wherever a minute without frames lies between two rows: a gap is drawn as a gap.
  function broken(rows, column) {
    var x = [], y = [];
    for (var i = 0; i < rows.length; i++) {
      var t = Date.parse(rows[i].window_start);
      if (i > 0 && t - Date.parse(rows[i - 1].window_start) > 60000) {
        x.push(new Date(t - 30000).toISOString()); y.push(null);
      }
      x.push(rows[i].window_start); y.push(rows[i][column]);
    }
    return {x: x, y: y};
  }

  function line(rows, column, name, color) {
    var xy = broken(rows, column);
    return {x: xy.x, y: xy.y, name: name, mode: "lines+markers", marker: {size: 3}, line: {color: color, width: 1.5},
            connectgaps: false, type: "scatter"};
  }

  function limits(names, data) {
    var shapes = [], notes = [];
    names.forEach(function (column) {
      var t = data.thresholds[column];
      if (!t) { return; }
      var left = column === "hbm_temp_max";  // its labels on the left: the GPU's 90 C critical meets the HBM's 90 C degraded
      [["degraded", "#f9a825"], ["critical", "#c62828"]].forEach(function (level) {
        shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, y0: t[level[0]], y1: t[level[0]],
                     line: {color: level[1], dash: "dash", width: 1}});
        notes.push({xref: "paper", x: left ? 0 : 1, y: t[level[0]], xanchor: left ? "left" : "right", yanchor: "bottom", showarrow: false,
                    text: column.replace("_max", "") + " " + level[0] + " " + t[level[0]] + " C",
                    font: {size: 9, color: level[1]}});
      });
    });
    return {shapes: shapes, annotations: notes};
  }

  function range(data) { return {range: [data.start, data.end], type: "date"}; }

  function heatmap(data) {
    var metric = document.getElementById("heat-metric").value;
    var z = [], hover = [];
    for (var n = 0; n < 8; n++) { z.push(new Array(8).fill(null)); hover.push(new Array(8).fill("no data")); }
    data.gpus.forEach(function (g) {
      var v = metric === "state" ? STATE_NUM[g.state] : g[metric];
      z[g.node][g.gpu] = v;
      hover[g.node][g.gpu] = "node " + g.node + " gpu " + g.gpu + "<br>" + text(g.state) +
        "<br>temp " + (g.temp_max === null ? "-" : g.temp_max.toFixed(1)) + " C, util " +
        (g.util_mean === null ? "-" : g.util_mean.toFixed(0)) + "%" +
        (g.reasons.length ? "<br>" + g.reasons.map(text).join("<br>") : "");
    });
    var trace = {z: z, type: "heatmap", hoverinfo: "text", text: hover, xgap: 2, ygap: 2,
                 x: [0, 1, 2, 3, 4, 5, 6, 7], y: [0, 1, 2, 3, 4, 5, 6, 7]};
    if (metric === "state") {
      trace.zmin = -1; trace.zmax = 2;
      trace.colorscale = [[0, COLORS.unknown], [0.33, COLORS.unknown], [0.33, COLORS.ok], [0.5, COLORS.ok],
                          [0.5, COLORS.degraded], [0.83, COLORS.degraded], [0.83, COLORS.critical], [1, COLORS.critical]];
    } else if (metric === "temp_max") {
      trace.zmin = 30; trace.zmax = 95; trace.colorscale = "YlOrRd"; trace.reversescale = true;
    } else {
      trace.zmin = 0; trace.zmax = 100; trace.colorscale = "Blues";
    }
    Plotly.react("plot-heatmap", [trace], Object.assign({}, layoutBase, {
      showlegend: false, xaxis: {title: {text: "GPU"}, dtick: 1}, yaxis: {title: {text: "node"}, dtick: 1, autorange: "reversed"}
    }), config);
  }

  function draw(data) {
    last = data;
    var rows = data.series;
    heatmap(data);
    var temp = limits(["temp_max", "hbm_temp_max"], data);
    Plotly.react("plot-temp", [line(rows, "temp_max", "GPU temp max (C)", "#d84315"),
                               line(rows, "hbm_temp_max", "HBM temp max (C)", "#6a1b9a"),
                               line(rows, "temp_mean", "GPU temp mean (C)", "#ff8a65")],
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "C"}}, shapes: temp.shapes, annotations: temp.annotations}), config);
    Plotly.react("plot-power", [line(rows, "power_mean", "power mean (W)", "#1565c0")],
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "W"}}}), config);
    Plotly.react("plot-util", [line(rows, "util_mean", "utilization mean (%)", "#00838f")],
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "%"}, range: [0, 100]}}), config);
    var x = rows.map(function (r) { return r.window_start; });
    function bars(column, name, color) {
      return {x: x, y: rows.map(function (r) { return r[column]; }), name: name, type: "bar", marker: {color: color}};
    }
    Plotly.react("plot-errors", [bars("ecc_sbe_inc", "ECC SBE", "#ef6c00"), bars("ecc_dbe_inc", "ECC DBE", "#b71c1c"),
                                 bars("seu_inc", "SEU", "#4527a0")],
      Object.assign({}, layoutBase, {barmode: "group", xaxis: range(data), yaxis: {title: {text: "per minute"}}}), config);
    Plotly.react("plot-coverage", [{
      x: x, y: rows.map(function (r) { return r.coverage; }), type: "bar", name: "coverage",
      marker: {color: rows.map(function (r) { return r.playback_frames > 0 ? "#ff9800" : "#78909c"; })},
      hovertext: rows.map(function (r) { return r.frames + " frames" + (r.playback_frames ? ", " + r.playback_frames + " from playback" : ""); })
    }], Object.assign({}, layoutBase, {showlegend: false, xaxis: range(data), yaxis: {title: {text: "coverage"}, range: [0, 1.05]}}), config);
    Plotly.react("plot-health", [{
      x: x, y: rows.map(function () { return 1; }), type: "bar", name: "health",
      marker: {color: rows.map(function (r) { return COLORS[r.state] || COLORS.unknown; })},
      hovertext: rows.map(function (r) { return text(r.state) + (r.reasons.length ? ": " + r.reasons.map(text).join("; ") : ""); }),
      hoverinfo: "x+text"
    }], Object.assign({}, layoutBase, {showlegend: false, bargap: 0, xaxis: range(data), yaxis: {visible: false}}), config);
    document.body.setAttribute("data-plotted", String(Date.now()));
  }

  function load() {
    var url = "/api/rack?id=" + encodeURIComponent(meta.rack) + "&range=" + encodeURIComponent(meta.range);
    return fetch(url, {cache: "no-store"}).then(function (r) { return r.json(); }).then(draw);
  }

  document.getElementById("heat-metric").addEventListener("change", function () { if (last) { heatmap(last); } });
  document.addEventListener("orbitwatch:update", load);
  load();
})();
