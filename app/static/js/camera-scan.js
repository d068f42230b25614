/* 振风超市 — camera scanning at the counter (QR codes and common 1D barcodes).
 * Needs /static/vendor/html5-qrcode-2.3.8.min.js loaded first (vendored by scripts/vendor-assets; no CDN).
 *
 *   zfCamera.start(containerId, onText)  -> Promise<boolean>, never rejects/throws.
 *       Shows the back camera in the element #containerId and calls onText(decodedText) for each scan;
 *       the same text again within 2 s of its last accepted scan is ignored. Keeps scanning until stop().
 *       If the camera cannot be opened, a short Chinese message is written into the container instead.
 *   zfCamera.stop()                      -> Promise, never rejects. Stops and clears the scanner, if any.
 *   zfCamera.isRunning()                 -> boolean: a camera is open and scanning.
 *
 * The browser only grants the camera on https:// or http://localhost (getUserMedia needs a secure context).
 * Plain ES5 + Promise: no modules, no build step.
 */
(function (window, document) {
  "use strict";

  var REPEAT_MS = 2000;
  var MSG_NO_LIB = "扫码组件未加载";
  var MSG_NO_CAMERA = "无法打开摄像头：请允许使用摄像头，或改用扫码枪/输入户号。（手机上需通过 https 访问）";

  var scanner = null;      // the running (or starting) Html5Qrcode
  var generation = 0;      // bumped by every start/stop, so a late camera start can tell it was cancelled

  function showMessage(el, text) {
    if (!el) { return; }
    el.innerHTML = "";
    var p = document.createElement("p");
    p.className = "zf-camera-msg";
    p.setAttribute("role", "alert");
    p.textContent = text;
    el.appendChild(p);
  }

  function formatsToSupport() {
    var F = window.Html5QrcodeSupportedFormats;
    if (!F) { return undefined; }
    var names = ["QR_CODE", "EAN_13", "EAN_8", "CODE_128", "UPC_A"];
    var out = [];
    for (var i = 0; i < names.length; i++) {
      if (typeof F[names[i]] === "number") { out.push(F[names[i]]); }
    }
    return out.length ? out : undefined;
  }

  function qrbox(viewfinderWidth, viewfinderHeight) {
    var side = Math.floor(Math.min(viewfinderWidth, viewfinderHeight) * 0.7);
    side = Math.max(side, 50); // the library rejects a box under 50 px
    return { width: side, height: side };
  }

  function cameraPossible() {
    if (window.isSecureContext === false) { return false; }
    var md = window.navigator && window.navigator.mediaDevices;
    return !!(md && typeof md.getUserMedia === "function");
  }

  // Stop and clear one scanner; always resolves.
  function shutDown(s) {
    if (!s) { return Promise.resolve(); }
    var stopped;
    try {
      stopped = s.stop();
    } catch (e) {            // "Cannot stop, scanner is not running or paused." (never started, or still starting)
      stopped = Promise.resolve();
    }
    return Promise.resolve(stopped).then(null, function () {}).then(function () {
      try { s.clear(); } catch (e) { /* still scanning or element gone: nothing to clear */ }
    });
  }

  function stop() {
    generation++;
    var s = scanner;
    scanner = null;
    return shutDown(s);
  }

  function start(containerId, onText) {
    var el = document.getElementById(containerId);
    var before = stop(); // one scanner at a time
    var myGen = generation;

    if (!el) {
      if (window.console) { window.console.warn("zfCamera: no element #" + containerId); }
      return before.then(function () { return false; });
    }
    if (typeof window.Html5Qrcode !== "function") {
      showMessage(el, MSG_NO_LIB);
      return before.then(function () { return false; });
    }
    if (!cameraPossible()) {
      showMessage(el, MSG_NO_CAMERA);
      return before.then(function () { return false; });
    }

    var lastText = null;
    var lastTime = 0;
    function onSuccess(decodedText) {
      var now = Date.now();
      if (decodedText === lastText && now - lastTime < REPEAT_MS) { return; }
      lastText = decodedText;
      lastTime = now;
      try {
        onText(decodedText);
      } catch (e) {
        if (window.console) { window.console.error("zfCamera: onText failed", e); }
      }
    }
    function onFailure() { /* called for every frame without a code: ignore */ }

    return before.then(function () {
      if (myGen !== generation) { return false; } // stop() or another start() came meanwhile
      var s;
      try {
        var formats = formatsToSupport();
        s = new window.Html5Qrcode(containerId, formats ? { formatsToSupport: formats, verbose: false } : false);
      } catch (e) {
        if (window.console) { window.console.warn("zfCamera:", e); }
        showMessage(el, MSG_NO_CAMERA);
        return false;
      }
      scanner = s;
      var started;
      try {
        started = s.start({ facingMode: "environment" }, { fps: 10, qrbox: qrbox }, onSuccess, onFailure);
      } catch (e) {
        started = Promise.reject(e);
      }
      return Promise.resolve(started).then(function () {
        if (myGen !== generation) { // cancelled while the camera was opening
          return shutDown(s).then(function () { return false; });
        }
        return true;
      }, function (err) {
        if (window.console) { window.console.warn("zfCamera: camera did not start:", err); }
        if (scanner === s) { scanner = null; }
        return shutDown(s).then(function () {
          if (myGen === generation) { showMessage(el, MSG_NO_CAMERA); }
          return false;
        });
      });
    });
  }

  window.zfCamera = {
    start: start,
    stop: stop,
    isRunning: function () {
      var S = window.Html5QrcodeScannerState;
      try {
        var state = scanner ? scanner.getState() : null;
        return !!S && (state === S.SCANNING || state === S.PAUSED);
      } catch (e) { return false; }
    }
  };
})(window, document);
