/* The grant form on an account's page: only the scope the chosen role takes is shown, and one sentence says what
 * will be granted as the fields change. The server checks the same and asks for a confirmation before granting
 * (the form works without this script: every field shows, and the sentence comes on the confirmation). */
(function (document) {
  "use strict";
  var form = document.getElementById("grant-form");
  if (!form) { return; }
  var SCOPE = {county_admin: null, township_reviewer: "township_id", village_clerk: "village_id",
               committee_member: "village_id", store_clerk: "store_id", household: "household_id"};
  var role = form.elements.role;
  var fields = form.querySelectorAll("[data-scope]");
  var say = document.createElement("p");
  say.className = "grant-preview";
  say.setAttribute("data-testid", "grant-preview");
  say.setAttribute("aria-live", "polite");
  form.parentNode.insertBefore(say, form.nextSibling);

  function chosenText(name) {
    var el = form.elements[name];
    if (!el || !el.value) { return ""; }
    if (el.tagName === "SELECT") { return el.options[el.selectedIndex].text; }
    return "农户编号 " + el.value;
  }

  function update() {
    var need = SCOPE[role.value];
    Array.prototype.forEach.call(fields, function (label) {
      var name = label.getAttribute("data-scope");
      var show = need !== undefined && name === need;
      label.hidden = !show;
      var input = form.elements[name];
      if (!show && input) { input.value = ""; }  // a hidden choice is never sent
    });
    var roleText = role.value ? role.options[role.selectedIndex].text : "";
    if (!roleText) {
      say.textContent = "请先选择角色。";
    } else if (need === null) {
      say.textContent = "将授予 " + form.getAttribute("data-user") + "“全县 " + roleText + "”";
    } else if (!chosenText(need)) {
      say.textContent = roleText + "：请选择范围。";
    } else {
      say.textContent = "将授予 " + form.getAttribute("data-user") + "“" + chosenText(need).trim() + " " + roleText.trim() + "”";
    }
  }

  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
})(document);
