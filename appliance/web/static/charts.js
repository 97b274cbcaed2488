// Device charts (PROBE-4) with uPlot, served locally. No inline script or style (CSP):
// everything is read from data- attributes and drawn by this file.
// Charts start on page load, or when htmx swaps them in (the device page's probe panel).
(function () {
  "use strict";
  function init(section) {
  if (!section || typeof uPlot === "undefined" || section.getAttribute("data-ready")) { return; }
  section.setAttribute("data-ready", "1");
  var url = section.getAttribute("data-series");
  var status = document.getElementById("chart-status");
  var charts = [];

  function draw(data) {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var points = data.ts.length;
    status.textContent = points ? points + " points" + (data.width ? " (" + (data.width / 60) + "-minute averages)" : "") : "No data in this range yet.";
    section.setAttribute("data-points", String(points));
    section.querySelectorAll(".chart").forEach(function (el) {
      var metric = el.getAttribute("data-metric");
      var width = Math.max(300, Math.min(900, section.clientWidth - 20));
      var opts = {
        title: el.getAttribute("data-label"), width: width, height: 160,
        scales: { x: { time: true }, y: metric === "latency_ms" ? {} : { range: [0, 100] } },
        series: [{}, { label: el.getAttribute("data-label"), stroke: "#0969da", width: 1.5, spanGaps: false }],
        legend: { show: true }
      };
      charts.push(new uPlot(opts, [data.ts, data[metric]], el));
    });
  }

  function load(range) {
    section.querySelectorAll("button[data-range]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-range") === range ? "true" : "false");
    });
    status.textContent = "Loading…";
    fetch(url + "?range=" + encodeURIComponent(range), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(draw)
      .catch(function (e) { status.textContent = "Could not load the chart data (" + e.message + ")."; });
  }

  section.addEventListener("click", function (event) {
    var range = event.target.getAttribute && event.target.getAttribute("data-range");
    if (range) { load(range); }
  });
  load("1h");
  var timer = setInterval(function () {
    if (!document.body.contains(section)) { clearInterval(timer); return; }
    var pressed = section.querySelector("button[aria-pressed='true']");
    if (pressed && pressed.getAttribute("data-range") === "1h") { load("1h"); }
  }, 30000);
  }
  init(document.getElementById("charts"));
  document.addEventListener("htmx:afterSettle", function () { init(document.getElementById("charts")); });
})();
