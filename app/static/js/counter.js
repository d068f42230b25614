/* 振风超市 — the counter page. The page works without this file (type quantities, press 确认兑换); with it:
 * +/- buttons, item barcodes from a USB scanner or the camera add one unit, the running total and the balance
 * after are shown as the clerk goes, an over-balance / over-stock / over-limit cart cannot be confirmed, and
 * Enter in a quantity field never submits the cart by accident. Plain ES5, no build step. */
(function (document) {
  "use strict";
  var counter = document.getElementById("counter");
  if (!counter) { return; }
  var scan = document.getElementById("scan");
  var scanForm = document.getElementById("scan-form");
  var cart = document.getElementById("cart");
  var itemScan = document.getElementById("item-scan");
  var panel = document.querySelector(".household-panel");

  function rows() { return cart ? Array.prototype.slice.call(cart.querySelectorAll("tr[data-item]")) : []; }
  function qtyInput(row) { return row.querySelector("input[name=qty]"); }
  function qtyOf(row) {
    var v = qtyInput(row).value.trim();
    return /^\d+$/.test(v) ? parseInt(v, 10) : (v === "" ? 0 : NaN);
  }

  function recompute() {
    if (!cart) { return; }
    var balance = parseInt(panel.getAttribute("data-balance"), 10);
    var limitLeft = panel.getAttribute("data-limit-left");
    var total = 0, problem = "";
    rows().forEach(function (row) {
      var q = qtyOf(row), stock = parseInt(row.getAttribute("data-stock"), 10);
      row.classList.toggle("picked", q > 0);
      if (isNaN(q)) { problem = row.getAttribute("data-name") + "：数量须为整数"; return; }
      if (q > stock) { problem = row.getAttribute("data-name") + " 库存只有 " + stock; }
      total += q * parseInt(row.getAttribute("data-points"), 10);
    });
    if (!problem && total > balance) { problem = "积分不足：还差 " + (total - balance) + " 分"; }
    if (!problem && limitLeft !== "" && total > parseInt(limitLeft, 10)) {
      problem = "超过本店每户每日上限：今天最多还能兑换 " + Math.max(parseInt(limitLeft, 10), 0) + " 分";
    }
    document.getElementById("total").textContent = total;
    document.getElementById("after").textContent = balance - total;
    document.getElementById("cart-warning").textContent = problem;
    document.getElementById("confirm").disabled = total === 0 || problem !== "";
  }

  function bump(row, delta) {
    var q = qtyOf(row) || 0, stock = parseInt(row.getAttribute("data-stock"), 10);
    q = Math.max(0, Math.min(stock, q + delta));
    qtyInput(row).value = q ? String(q) : "";
    recompute();
  }

  function addByBarcode(text) {
    var code = text.trim().toUpperCase(), warn = document.getElementById("cart-warning");
    if (!code) { return; }
    if (code.indexOf("ZF1-") === 0) { warn.textContent = "这是积分卡：请先确认或取消当前这一户的兑换"; return; }
    var hit = rows().filter(function (r) { return r.getAttribute("data-barcode") === code; })[0];
    if (!hit) { warn.textContent = "条码 " + code + " 不是本店在售的商品"; return; }
    if (parseInt(hit.getAttribute("data-stock"), 10) <= qtyOf(hit)) {
      warn.textContent = hit.getAttribute("data-name") + " 库存不够了"; return;
    }
    bump(hit, 1);
  }

  if (cart) {
    rows().forEach(function (row) {
      var dec = row.querySelector(".dec"), inc = row.querySelector(".inc");
      dec.hidden = false; inc.hidden = false;
      dec.addEventListener("click", function () { bump(row, -1); });
      inc.addEventListener("click", function () { bump(row, 1); });
      qtyInput(row).addEventListener("input", recompute);
      qtyInput(row).addEventListener("keydown", function (e) {
        if (e.key === "Enter") { e.preventDefault(); itemScan.focus(); }
      });
    });
    itemScan.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); addByBarcode(itemScan.value); itemScan.value = ""; }
    });
    cart.addEventListener("submit", function () {
      var button = document.getElementById("confirm");
      window.setTimeout(function () { button.disabled = true; button.textContent = "正在兑换…"; }, 0);
    });
    recompute();
    var note = cart.querySelector("input[name=identity_note]");
    (note && !note.value ? note : itemScan).focus();
  }

  var toggle = document.getElementById("camera-toggle"), camera = document.getElementById("camera");
  if (toggle && window.navigator.mediaDevices && window.zfCamera) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      if (!camera.hidden) { camera.hidden = true; window.zfCamera.stop(); return; }
      camera.hidden = false;
      window.zfCamera.start("camera", function (text) {
        var code = text.trim().toUpperCase();
        if (cart && code.indexOf("ZF1-") !== 0) { addByBarcode(code); return; }
        window.zfCamera.stop();
        scan.value = code;
        scanForm.submit();
      });
    });
  }
})(document);
