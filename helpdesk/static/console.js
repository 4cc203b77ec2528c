/* DM Helpdesk console: small enhancements over pages that work without JavaScript.
   Countdowns, auto-submitting selects, keyboard shortcuts, the canned-reply and @mention pickers,
   reply-to, live-update polls. Customer text is only ever set with textContent. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const csrfToken = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" ||
    el.tagName === "SELECT" || el.isContentEditable);

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  /* Countdowns: any element with data-due (ISO time) shows the time left or overdue. */
  function duration(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    if (seconds < 60) return seconds + "s";
    let minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + "m";
    let hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) return hours + "h " + String(minutes).padStart(2, "0") + "m";
    return Math.floor(hours / 24) + "d " + (hours % 24) + "h";
  }
  function tick() {
    const now = Date.now();
    $$("[data-due]").forEach((el) => {
      const due = Date.parse(el.dataset.due);
      if (Number.isNaN(due)) return;
      const seconds = (due - now) / 1000;
      el.textContent = seconds >= 0 ? "in " + duration(seconds) : duration(seconds) + " overdue";
      el.classList.toggle("overdue", seconds < 0);
    });
  }
  tick();
  setInterval(tick, 15000);

  /* Selects marked data-autosubmit submit their form on change (their button is hidden). */
  $$("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form && select.form.requestSubmit());
  });
  $$("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  /* Flash messages fade after a while. */
  setTimeout(() => $$(".flashes .flash-success, .flashes .flash-info").forEach((el) => el.remove()), 6000);

  /* Global: "/" focuses search unless typing. */
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !typing(document.activeElement) && !event.ctrlKey && !event.metaKey) {
      const search = $(".topsearch input");
      if (search) { event.preventDefault(); search.focus(); }
    }
  });

  /* ---------------------------------------------------------------- Inbox */
  const rows = $$("#rows .row");
  if (rows.length || $("#bulk")) {
    const selectAll = $("#select-all");
    const counter = $("#selected-count");
    const checks = $$(".row-check");
    const refresh = () => {
      const chosen = checks.filter((c) => c.checked).length;
      counter.textContent = chosen ? chosen + " selected" : "Select";
      rows.forEach((row) => row.classList.toggle("selected", $(".row-check", row).checked));
      if (selectAll) selectAll.checked = chosen > 0 && chosen === checks.length;
    };
    checks.forEach((c) => c.addEventListener("change", refresh));
    if (selectAll) selectAll.addEventListener("change", () => {
      checks.forEach((c) => { c.checked = selectAll.checked; });
      refresh();
    });
    let cursor = -1;
    const move = (to) => {
      if (!rows.length) return;
      cursor = Math.max(0, Math.min(rows.length - 1, to));
      rows.forEach((row, i) => row.classList.toggle("cursor", i === cursor));
      rows[cursor].scrollIntoView({ block: "nearest" });
    };
    document.addEventListener("keydown", (event) => {
      if (typing(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "j") move(cursor + 1);
      else if (event.key === "k") move(cursor - 1);
      else if (event.key === "Enter" && cursor >= 0) window.location = rows[cursor].dataset.href;
      else if (event.key === "x" && cursor >= 0) {
        const check = $(".row-check", rows[cursor]);
        check.checked = !check.checked;
        refresh();
      } else return;
      event.preventDefault();
    });
    const live = $("#inbox-live");
    if (live) {
      let since = live.dataset.since;
      setInterval(async () => {
        if (document.hidden) return;
        try {
          const data = await getJSON(live.dataset.updatesUrl + "?since=" + encodeURIComponent(since));
          if (data.changed > 0) live.hidden = false;
        } catch (e) { /* offline for a moment: try again at the next tick */ }
      }, 20000);
    }
  }

  /* --------------------------------------------------------- Conversation */
  const thread = $("#thread");
  if (thread) {
    thread.scrollTop = thread.scrollHeight;
    if (window.location.hash && window.location.hash.startsWith("#m")) {
      const target = document.getElementById(window.location.hash.slice(1));
      if (target) target.scrollIntoView({ block: "center" });
    }
    const leaveUrl = thread.dataset.leaveUrl;
    window.addEventListener("pagehide", () => {
      if (!navigator.sendBeacon) return;
      const body = new FormData();
      body.append("csrf_token", csrfToken());
      try { navigator.sendBeacon(leaveUrl, body); } catch (e) { /* the grace period purges */ }
    });
    const live = $("#thread-live");
    if (live) {
      setInterval(async () => {
        if (document.hidden) return;
        try {
          const data = await getJSON(live.dataset.updatesUrl + "?after=" + live.dataset.after);
          if (data.new > 0) {
            $("#thread-live-count").textContent = data.new + " new message" + (data.new > 1 ? "s" : "");
            live.hidden = false;
          }
        } catch (e) { /* try again at the next tick */ }
      }, 15000);
    }
  }

  const composer = $("#composer");
  if (composer) setupComposer(composer);

  function setupComposer(form) {
    const text = $("#composer-text", form);
    const picker = $("#picker", form);
    const warning = $("#placeholder-warning", form);
    const placeholderRe = /\{\{\s*(contact|agent|brand|ticket)\.\w+\s*\}\}/g;
    let mode = form.classList.contains("mode-note") ? "note" : "reply";
    let items = [];  // picker state
    let active = 0;
    let token = null;
    let request = 0;

    const setMode = (next) => {
      mode = next;
      form.classList.toggle("mode-note", mode === "note");
      form.classList.toggle("mode-reply", mode === "reply");
      form.action = mode === "note" ? form.dataset.noteAction : form.dataset.replyAction;
      text.placeholder = mode === "note"
        ? "Private note for the team: type @ to mention someone"
        : "Write a reply… type / for canned replies";
      closePicker();
    };
    $$(".mode-btn", form).forEach((b) => b.addEventListener("click", () => { setMode(b.dataset.mode); text.focus(); }));
    setMode(mode);

    /* Reply to a specific message. */
    const quoting = $("#quoting", form);
    const replyTo = $("#reply-to", form);
    const cancelQuote = () => { replyTo.value = ""; quoting.hidden = true; };
    $$(".js-reply").forEach((link) => link.addEventListener("click", (event) => {
      event.preventDefault();
      replyTo.value = link.dataset.replyTo;
      $("#quoting-text", form).textContent = link.dataset.preview;
      quoting.hidden = false;
      setMode("reply");
      text.focus();
    }));
    $("#quoting-cancel", form).addEventListener("click", (event) => { event.preventDefault(); cancelQuote(); });

    /* Keyboard: r reply, n note, Ctrl+Enter send, Esc closes the picker or the quote. */
    document.addEventListener("keydown", (event) => {
      if (typing(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "r") { setMode("reply"); text.focus(); event.preventDefault(); }
      else if (event.key === "n") { setMode("note"); text.focus(); event.preventDefault(); }
      else if (event.key === "e" || event.key === "t") {
        const button = $('button[data-key="' + event.key + '"]');
        if (button) { event.preventDefault(); button.click(); }
      }
    });

    /* Unfilled canned-reply placeholders are flagged, and block sending until edited. */
    const checkPlaceholders = () => {
      const found = mode === "reply" ? (text.value.match(placeholderRe) || []) : [];
      warning.hidden = found.length === 0;
      warning.textContent = found.length
        ? "Fill in before sending: " + Array.from(new Set(found)).join(", ") : "";
      return found.length === 0;
    };
    text.addEventListener("input", checkPlaceholders);
    form.addEventListener("submit", (event) => {
      const viaNote = event.submitter && event.submitter.classList.contains("note-btn");
      if (!viaNote && mode === "reply" && !checkPlaceholders()) { event.preventDefault(); text.focus(); }
    });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit(mode === "note" ? $(".note-btn", form) : $(".reply-btn", form));
      }
    });

    /* Pickers: "/" (reply mode) lists canned replies, "@" (note mode) lists agents. */

    function currentToken() {
      const upto = text.value.slice(0, text.selectionStart);
      const trigger = mode === "reply" ? "/" : "@";
      const match = upto.match(mode === "reply" ? /(^|\s)(\/[^\s]*(?: [^\s/]*){0,3})$/ : /(^|\s)(@[\w.-]*)$/);
      if (!match || !match[2].startsWith(trigger)) return null;
      return { start: upto.length - match[2].length, end: text.selectionStart, query: match[2] };
    }
    function closePicker() { picker.hidden = true; items = []; token = null; }
    function render() {
      picker.replaceChildren();
      if (!items.length) {
        const empty = document.createElement("div");
        empty.className = "picker-empty";
        empty.textContent = mode === "reply" ? "No canned reply matches" : "No agent matches";
        picker.append(empty);
      }
      items.forEach((item, i) => {
        const row = document.createElement("div");
        row.className = "picker-item" + (i === active ? " active" : "");
        row.setAttribute("role", "option");
        const code = document.createElement("span");
        code.className = "code";
        const title = document.createElement("span");
        title.className = "title";
        const body = document.createElement("div");
        body.className = "body";
        if (mode === "reply") {
          code.textContent = "/" + item.shortcode;
          title.textContent = item.title;
          body.textContent = item.preview;
        } else {
          code.textContent = "@" + item.handle;
          title.textContent = item.name;
        }
        row.append(code, title, body);
        row.addEventListener("mousedown", (event) => { event.preventDefault(); choose(i); });
        picker.append(row);
      });
      picker.hidden = false;
    }
    async function lookup() {
      token = currentToken();
      if (!token) { closePicker(); return; }
      const mine = ++request;
      const url = mode === "reply"
        ? form.dataset.cannedSearch + "?q=" + encodeURIComponent(token.query.slice(1))
        : form.dataset.mentions + "?q=" + encodeURIComponent(token.query.slice(1));
      try {
        const data = await getJSON(url);
        if (mine !== request) return;
        items = data.items || [];
        active = 0;
        render();
      } catch (e) { closePicker(); }
    }
    function insert(value) {
      const before = text.value.slice(0, token.start);
      const after = text.value.slice(token.end);
      text.value = before + value + after;
      const caret = before.length + value.length;
      text.setSelectionRange(caret, caret);
      text.focus();
      checkPlaceholders();
    }
    async function choose(index) {
      const item = items[index];
      const at = token;
      closePicker();
      if (!item || !at) return;
      token = at;
      if (mode === "note") { insert("@" + item.handle + " "); token = null; return; }
      try {
        const data = await getJSON(form.dataset.cannedRender.replace("987654321", String(item.id)));
        insert(data.text);
        if (data.too_long) {
          warning.hidden = false;
          warning.textContent = "This text is longer than Instagram's 1000-byte limit: shorten it.";
        }
      } catch (e) {
        warning.hidden = false;
        warning.textContent = "The canned reply could not be loaded.";
      }
      token = null;
    }
    text.addEventListener("input", lookup);
    text.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        if (!picker.hidden) closePicker(); else cancelQuote();
        return;
      }
      if (picker.hidden || !items.length) return;
      if (event.key === "ArrowDown") { active = (active + 1) % items.length; render(); }
      else if (event.key === "ArrowUp") { active = (active - 1 + items.length) % items.length; render(); }
      else if (event.key === "Enter" || event.key === "Tab") { choose(active); }
      else return;
      event.preventDefault();
    });
    text.addEventListener("blur", () => setTimeout(closePicker, 150));
  }
})();
