// The dashboard's backlog box: refreshed every data-every milliseconds from data-url, since the
// backlog is now and not over the page's range. A file of its own: the Content-Security-Policy
// runs no inline script.
(function () {
  "use strict";
  var box = document.getElementById("backlog");
  if (!box || !window.fetch) return;
  var every = parseInt(box.dataset.every, 10) || 30000;
  setInterval(function () {
    fetch(box.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        box.querySelectorAll("[data-backlog]").forEach(function (el) {
          var value = data[el.dataset.backlog];
          if (value !== undefined) el.textContent = value;
        });
      })
      .catch(function () {});
  }, every);
})();
