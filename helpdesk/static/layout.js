/* DM Helpdesk console: the page's frame on every screen size, and media that fails gracefully.
   The menu button of the top bar, the inbox's filter box and the conversation's ticket sheet
   (small screens only: without JavaScript they simply stay open in the page), and placeholders
   for pictures, videos and voice messages whose URL no longer loads (the platform's media and
   profile picture URLs expire): initials for avatars, a note for message media, never a broken
   image. No inline handlers: one listener catches every element's `error` in the capture phase. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const SHEET_KEY = "helpdesk.ticket-sheet";
  const MEDIA = "img, video, audio";

  /* A button that opens and closes the element it controls, keeping aria-expanded true. */
  function toggler(button, target, openClass, onChange) {
    button.addEventListener("click", () => {
      const open = !target.classList.contains(openClass);
      target.classList.toggle(openClass, open);
      button.setAttribute("aria-expanded", String(open));
      if (onChange) onChange(open);
    });
  }

  function setupMenu() {
    const button = document.querySelector(".menu-toggle");
    const menu = document.getElementById("topmenu");
    if (!button || !menu) return;
    toggler(button, menu, "open");
    const close = () => {
      menu.classList.remove("open");
      button.setAttribute("aria-expanded", "false");
    };
    document.addEventListener("click", (event) => {
      if (menu.classList.contains("open") && !menu.contains(event.target) &&
          !button.contains(event.target)) close();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.classList.contains("open")) close();
    });
  }

  function setupFilters() {
    const button = document.querySelector(".filters-toggle");
    const sidebar = button && button.closest(".sidebar");
    if (sidebar) toggler(button, sidebar, "filters-open");
  }

  /* The ticket sheet stays open across the page load that follows one of its own forms, so an
     agent can set the status, then the assignee, then a tag without reopening it each time. */
  function setupTicketSheet() {
    const pane = document.getElementById("side-pane");
    if (!pane) return;
    const buttons = Array.from(document.querySelectorAll(".ticket-toggle, .sheet-close"));
    const thread = document.getElementById("thread");
    const here = thread ? thread.dataset.conversationId : "";
    const show = (open) => {
      pane.classList.toggle("open", open);
      buttons.forEach((b) => b.setAttribute("aria-expanded", String(open)));
      if (open) {
        const heading = pane.querySelector(".sheet-head strong");
        if (heading) heading.focus({ preventScroll: true });
      }
    };
    buttons.forEach((b) => b.addEventListener("click", () => {
      show(b.classList.contains("ticket-toggle") ? !pane.classList.contains("open") : false);
    }));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && pane.classList.contains("open")) show(false);
    });
    pane.addEventListener("submit", () => {
      if (pane.classList.contains("open")) sessionStorage.setItem(SHEET_KEY, here);
    });
    if (here && sessionStorage.getItem(SHEET_KEY) === here) show(true);
    sessionStorage.removeItem(SHEET_KEY);
  }

  /* Media placeholders -------------------------------------------------------------------- */

  function linkPlaceholder(placeholder) {
    const holder = placeholder.closest("[data-instagram-url]");
    const words = placeholder.querySelector("span.open-on-instagram");
    if (!holder || !words) return;
    const link = document.createElement("a");
    link.className = "open-on-instagram";
    link.href = holder.dataset.instagramUrl;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    link.textContent = words.textContent;
    words.replaceWith(link);
  }

  function placeholder() {
    const template = document.getElementById("media-missing-template");
    if (template) return template.content.firstElementChild.cloneNode(true);
    const note = document.createElement("div");
    note.className = "media-missing";
    note.textContent = "Media no longer available";
    return note;
  }

  function replaceBroken(element) {
    if (!element.isConnected) return;
    const avatar = element.closest(".avatar");
    if (avatar) {
      avatar.textContent = avatar.dataset.initials || "?";
      return;
    }
    if (element.closest(".card-product")) {
      const icon = document.createElement("span");
      icon.className = "card-icon";
      icon.textContent = "🛍";
      element.replaceWith(icon);
      return;
    }
    const note = placeholder();
    const wrapper = element.closest("a.media, .voice") || element;
    wrapper.replaceWith(note);
    linkPlaceholder(note);
  }

  function broken(element) {
    if (element.tagName === "IMG") {
      return element.complete && element.naturalWidth === 0 && !!element.getAttribute("src");
    }
    return !!element.error || element.networkState === HTMLMediaElement.NETWORK_NO_SOURCE;
  }

  document.addEventListener("error", (event) => {
    const target = event.target;
    if (!(target instanceof Element)) return;
    const media = target.tagName === "SOURCE" ? target.parentElement : target;
    if (media && media.matches(MEDIA)) replaceBroken(media);
  }, true);

  /* Media that failed before this script ran, or in nodes added later (live updates). */
  function sweep(root) {
    const found = root.matches && root.matches(MEDIA) ? [root] : [];
    found.concat(Array.from(root.querySelectorAll ? root.querySelectorAll(MEDIA) : []))
      .filter(broken).forEach(replaceBroken);
    const notes = root.matches && root.matches(".media-missing") ? [root] : [];
    notes.concat(Array.from(root.querySelectorAll ? root.querySelectorAll(".media-missing") : []))
      .forEach(linkPlaceholder);
  }

  function start() {
    setupMenu();
    setupFilters();
    setupTicketSheet();
    sweep(document.body);
    new MutationObserver((changes) => {
      changes.forEach((change) => change.addedNodes.forEach((node) => {
        if (node.nodeType === Node.ELEMENT_NODE) sweep(node);
      }));
    }).observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
