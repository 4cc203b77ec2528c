/* DM Helpdesk: parts of a page that follow work in progress, such as a channel's history being
   read. An element with an id and data-refresh-seconds is fetched again from the page's own URL
   at that interval and replaced by its new copy, until the copy no longer asks for it (the work
   is done). A failed fetch is tried again at the next interval; an error answer stops it, and a
   reload then shows what went wrong. */
(function () {
  "use strict";

  function follow(element) {
    const seconds = Number(element.dataset.refreshSeconds);
    if (!element.id || !(seconds > 0)) return;
    window.setTimeout(async () => {
      let response;
      try {
        response = await fetch(window.location.href, { credentials: "same-origin" });
      } catch (offline) {
        follow(element);
        return;
      }
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById(element.id);
      if (!fresh) return;
      const adopted = document.importNode(fresh, true);
      element.replaceWith(adopted);
      follow(adopted);
    }, seconds * 1000);
  }

  document.querySelectorAll("[data-refresh-seconds]").forEach(follow);
})();
