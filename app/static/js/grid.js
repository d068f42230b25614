// The rating grid: keyboard entry and autosave. Without this script the grid is a plain form with a save button.
(function () {
  "use strict";
  var table = document.getElementById("grid");
  if (!table) return;
  var keys = JSON.parse(table.dataset.keys || "{}");
  var url = table.dataset.save, csrf = table.dataset.csrf;
  var status = document.getElementById("save-status"), missing = document.getElementById("missing");
  var pending = {}, timer = null, inflight = false;
  var inputs = Array.prototype.slice.call(table.querySelectorAll("input.cell"));
  var cols = table.querySelector("thead tr").children.length - 2;

  function say(text, bad) { status.textContent = text; status.className = bad ? "bad" : "muted"; }
  function at(i) { return inputs[i]; }
  function move(input, dr, dc) {
    var i = inputs.indexOf(input), j = i + dr * cols + dc;
    while (j >= 0 && j < inputs.length && inputs[j].disabled) j += dr * cols + dc || 1;
    if (j >= 0 && j < inputs.length) { at(j).focus(); at(j).select(); }
  }
  function queue(input) {
    var h = input.closest("tr").dataset.h, t = input.dataset.t;
    pending[h + ":" + t] = { h: parseInt(h, 10), t: t, g: input.value.trim() };
    input.classList.add("dirty");
    clearTimeout(timer);
    timer = setTimeout(flush, 500);
  }
  function flush() {
    if (inflight) { timer = setTimeout(flush, 300); return; }
    var cells = Object.keys(pending).map(function (k) { return pending[k]; });
    if (!cells.length) return;
    var sent = pending; pending = {}; inflight = true;
    say("正在保存…");
    fetch(url, { method: "POST", credentials: "same-origin",
                 headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
                 body: JSON.stringify({ cells: cells }) })
      .then(function (r) {
        return r.text().then(function (t) {
          var b = null;
          try { b = JSON.parse(t); } catch (e) { b = { error: { message: r.status === 403 || r.status === 401
            ? "登录已过期或页面已过期，请刷新页面后重新填写未保存的格" : "保存失败（" + r.status + "）" } }; }
          return { ok: r.ok, body: b };
        });
      })
      .then(function (res) {
        inflight = false;
        if (!res.ok) {
          say((res.body && res.body.error && res.body.error.message) || "保存失败", true);
          Object.keys(sent).forEach(function (k) { var p = sent[k]; mark(p, "bad"); });
          return;
        }
        Object.keys(sent).forEach(function (k) { var p = sent[k]; mark(p, "saved"); });
        if (res.body.missing !== null && res.body.missing !== undefined && missing) missing.textContent = res.body.missing;
        say("已保存");
      })
      .catch(function () {
        inflight = false; say("网络中断，未保存：稍后自动重试", true);
        Object.keys(sent).forEach(function (k) { if (!pending[k]) pending[k] = sent[k]; });
        clearTimeout(timer); timer = setTimeout(flush, 5000);
      });
  }
  function mark(p, cls) {
    var el = table.querySelector('tr[data-h="' + p.h + '"] input[data-t="' + p.t + '"]');
    if (!el) return;
    el.classList.remove("dirty", "bad", "saved");
    if (cls === "saved") el.dataset.v = el.value; else el.classList.add(cls);
  }
  table.addEventListener("keydown", function (ev) {
    var input = ev.target;
    if (!input.classList || !input.classList.contains("cell")) return;
    var k = ev.key;
    if (k === "ArrowDown" || k === "Enter") { ev.preventDefault(); move(input, 1, 0); return; }
    if (k === "ArrowUp") { ev.preventDefault(); move(input, -1, 0); return; }
    if (k === "ArrowRight" && input.selectionStart === input.value.length) { ev.preventDefault(); move(input, 0, 1); return; }
    if (k === "ArrowLeft" && input.selectionStart === 0) { ev.preventDefault(); move(input, 0, -1); return; }
    if (k === "Backspace" || k === "Delete") { ev.preventDefault(); input.value = ""; queue(input); return; }
    if (k.length === 1 && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      var map = keys[input.dataset.t] || {}, g = map[k.toLowerCase()];
      ev.preventDefault();
      if (g) { input.value = g; queue(input); move(input, 0, 1); }
      else { say("“" + k + "”不是本项目的等级", true); }
    }
  });
  table.addEventListener("input", function (ev) { if (ev.target.classList.contains("cell")) queue(ev.target); });
  table.addEventListener("focusin", function (ev) { if (ev.target.select) ev.target.select(); });
  var form = document.getElementById("grid-form");
  if (form) form.addEventListener("submit", function (ev) { ev.preventDefault(); clearTimeout(timer); flush(); });
  window.addEventListener("beforeunload", function (ev) {
    if (Object.keys(pending).length || inflight) { flush(); ev.preventDefault(); ev.returnValue = ""; }
  });
})();
