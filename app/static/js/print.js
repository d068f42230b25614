/* Print buttons: the page's security policy allows no inline script, so a button marked data-print is shown and
 * wired here (without script it stays hidden and the page's text says to use the browser's print). */
(function (document) {
  "use strict";
  var buttons = document.querySelectorAll("[data-print]");
  Array.prototype.forEach.call(buttons, function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
})(document);
