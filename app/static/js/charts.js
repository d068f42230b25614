/* Charts beside the report tables. The page's security policy allows no inline script, so each chart is an element
 * marked data-chart holding its data as JSON:
 *   {"type": "bar"|"line", "categories": [...], "series": [{"name", "data", "stack"?, "type"?, "color"?}], "unit"?}
 * A series may override the chart's type (a target drawn as a line over bars). Labels come from the page as given
 * (Chinese by default). Rendered as SVG with no animation on white, so the chart prints as sharply as the table
 * beside it; the table stays the record, the chart only shows its shape. */
(function (window, document) {
  "use strict";
  var echarts = window.echarts;
  var charts = [];
  if (!echarts) { return; }  // the table beside each chart still says everything

  function option(spec) {
    var unit = spec.unit || "";
    var type = spec.type === "line" ? "line" : "bar";
    return {
      animation: false,
      backgroundColor: "#fff",
      textStyle: {fontFamily: "system-ui, \"Noto Sans CJK SC\", \"Microsoft YaHei\", sans-serif"},
      grid: {left: 8, right: 16, top: 40, bottom: 8, containLabel: true},
      legend: {top: 4},
      tooltip: {trigger: "axis", valueFormatter: function (v) { return v === null || v === undefined ? "" : v + unit; }},
      xAxis: {type: "category", data: spec.categories || [], axisLabel: {interval: 0, hideOverlap: true}},
      yAxis: {type: "value", minInterval: 1, axisLabel: {formatter: "{value}" + unit}},
      series: (spec.series || []).map(function (s) {
        var t = s.type === "line" || s.type === "bar" ? s.type : type;
        var out = {name: s.name, type: t, data: s.data || [], barMaxWidth: 36};
        if (s.stack) { out.stack = s.stack; }
        if (s.color) { out.itemStyle = {color: s.color}; out.lineStyle = {color: s.color}; }
        if (t === "line") { out.symbolSize = 6; }
        return out;
      })
    };
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), function (el) {
    var spec;
    try {
      spec = JSON.parse(el.getAttribute("data-chart"));
    } catch (e) {
      return;  // nothing to draw; the table beside it remains
    }
    var chart = echarts.init(el, null, {renderer: "svg"});
    chart.setOption(option(spec));
    el.setAttribute("data-chart-ready", "");
    charts.push(chart);
  });

  function resize() { charts.forEach(function (c) { c.resize(); }); }
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) { window.clearTimeout(pending); }
    pending = window.setTimeout(resize, 100);
  });
  // Printing: the paper is narrower than the screen; fit the SVG to it and back afterwards.
  window.addEventListener("beforeprint", resize);
  window.addEventListener("afterprint", resize);
})(window, document);
