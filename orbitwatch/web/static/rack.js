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

  // A line over the minutes, broken at gaps; a minute with no neighbour on either side would not show as a
  // line, so such minutes get a marker of their own (markers on every point cost the browser twice the time).
  function line(rows, column, name, color) {
    var xy = broken(rows, column), alone = {x: [], y: []};
    for (var i = 0; i < xy.y.length; i++) {
      var before = i > 0 ? xy.y[i - 1] : null, after = i + 1 < xy.y.length ? xy.y[i + 1] : null;
      if (xy.y[i] !== null && before === null && after === null) { alone.x.push(xy.x[i]); alone.y.push(xy.y[i]); }
    }
    return [{x: xy.x, y: xy.y, name: name, mode: "lines", line: {color: color, width: 1.5}, connectgaps: false,
             type: "scatter", legendgroup: column},
            {x: alone.x, y: alone.y, name: name, mode: "markers", marker: {color: color, size: 4}, type: "scatter",
             legendgroup: column, showlegend: false}];
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
    Plotly.react("plot-temp", line(rows, "temp_max", "GPU temp max (C)", "#d84315").concat(
                               line(rows, "hbm_temp_max", "HBM temp max (C)", "#6a1b9a"),
                               line(rows, "temp_mean", "GPU temp mean (C)", "#ff8a65")),
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "C"}}, shapes: temp.shapes, annotations: temp.annotations}), config);
    Plotly.react("plot-power", line(rows, "power_mean", "power mean (W)", "#1565c0"),
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "W"}}}), config);
    Plotly.react("plot-util", line(rows, "util_mean", "utilization mean (%)", "#00838f"),
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "%"}, range: [0, 100]}}), config);
    // Counters and coverage as step lines and markers, the health as a one-row heatmap: a 7-day range has
    // thousands of minutes, and thousands of SVG bars take the browser far longer to draw.
    var x = rows.map(function (r) { return r.window_start; });
    function events(column, name, color, symbol) {
      var hits = rows.filter(function (r) { return r[column] > 0; });
      return {x: hits.map(function (r) { return r.window_start; }), y: hits.map(function (r) { return r[column]; }),
              name: name, mode: "markers", type: "scatter", marker: {color: color, size: 6, symbol: symbol}};
    }
    Plotly.react("plot-errors", [events("ecc_sbe_inc", "ECC SBE", "#ef6c00", "circle"),
                                 events("ecc_dbe_inc", "ECC DBE", "#b71c1c", "x"),
                                 events("seu_inc", "SEU", "#4527a0", "diamond")],
      Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "per minute"}, rangemode: "tozero"}}), config);
    var cover = broken(rows, "coverage");
    var played = rows.filter(function (r) { return r.playback_frames > 0; });
    Plotly.react("plot-coverage", [
      {x: cover.x, y: cover.y, name: "coverage", type: "scatter", mode: "lines", line: {shape: "hv", color: "#78909c"},
       fill: "tozeroy", connectgaps: false},
      {x: played.map(function (r) { return r.window_start; }), y: played.map(function () { return 1.02; }),
       name: "learned from playback", type: "scatter", mode: "markers", marker: {color: "#ff9800", size: 5, symbol: "square"},
       hovertext: played.map(function (r) { return r.playback_frames + " of " + r.frames + " frames from playback"; })}
    ], Object.assign({}, layoutBase, {xaxis: range(data), yaxis: {title: {text: "coverage"}, range: [0, 1.08]}}), config);
    var health = broken(rows, "state");
    Plotly.react("plot-health", [{
      x: health.x, y: [0], z: [health.y.map(function (s) { return s === null ? null : STATE_NUM[s]; })], type: "heatmap",
      zmin: -1, zmax: 2, showscale: false, hoverinfo: "x+text",
      text: [health.y.map(function (s) { return s === null ? "no data" : text(s); })],
      colorscale: [[0, COLORS.unknown], [0.33, COLORS.unknown], [0.33, COLORS.ok], [0.5, COLORS.ok],
                   [0.5, COLORS.degraded], [0.83, COLORS.degraded], [0.83, COLORS.critical], [1, COLORS.critical]]
    }], Object.assign({}, layoutBase, {showlegend: false, xaxis: range(data), yaxis: {visible: false}}), config);
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
