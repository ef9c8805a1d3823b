// valet web inbox: small progressive enhancements. Every page works without
// this file; it only adds confirmations, shortcuts and menu niceties.
(function () {
  "use strict";
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && t.tagName === "TEXTAREA" && t.form) {
      e.preventDefault();
      if (t.form.requestSubmit) t.form.requestSubmit(); else t.form.submit();
    }
    if (e.key === "Escape") closeMenus(null);
  });
  document.addEventListener("click", function (e) {
    closeMenus(e.target.closest ? e.target.closest("details.menu") : null);
  });
  document.addEventListener("focusin", function (e) {
    if (e.target.hasAttribute && e.target.hasAttribute("data-select")) e.target.select();
  });
  function closeMenus(keep) {
    document.querySelectorAll("details.menu[open]").forEach(function (d) {
      if (d !== keep) d.removeAttribute("open");
    });
  }
})();
