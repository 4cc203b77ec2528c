/* DM Helpdesk console: small enhancements over pages that work without JavaScript.
   Countdowns, auto-submitting selects, keyboard shortcuts and their help, the canned-reply and
   @mention pickers, reply-to, live updates (a Redis event stream, or a poll on the embedded
   default) and who else is viewing or typing. Customer text is only ever set with textContent;
   what the server renders (newer messages) is parsed inert with DOMParser and adopted. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
  const csrfToken = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" ||
    el.tagName === "SELECT" || el.isContentEditable);
  const LIST_KEY = "helpdesk.inbox-list";

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }
  async function getHTML(url) {
    const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
    return response.text();
  }
  async function postForm(url, fields) {
    const body = new FormData();
    body.append("csrf_token", csrfToken());
    Object.keys(fields).forEach((name) => body.append(name, fields[name]));
    const response = await fetch(url, {
      method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }
  /* Server-rendered HTML, parsed without running anything in it, as nodes of this document. */
  function fragment(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    return Array.from(doc.body.children).map((node) => document.importNode(node, true));
  }
  function toast(message) {
    let box = $(".flashes");
    if (!box) {
      box = document.createElement("div");
      box.className = "flashes";
      box.setAttribute("role", "status");
      document.body.append(box);
    }
    const flash = document.createElement("div");
    flash.className = "flash flash-info";
    flash.textContent = message;
    box.append(flash);
    setTimeout(() => flash.remove(), 4000);
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

  /* ------------------------------------------------------------ Live updates */
  const live = $("#live");
  const liveHandlers = [];
  const reconnectHandlers = [];
  const onLive = (handler) => liveHandlers.push(handler);
  /* Other scripts of a page (inbox_live.js) hear the same events as DOM events. */
  onLive((item) => document.dispatchEvent(new CustomEvent("helpdesk:live", { detail: item })));
  reconnectHandlers.push(() => document.dispatchEvent(new CustomEvent("helpdesk:live-reconnect")));

  function startLive(conversationId) {
    if (!live) return;
    const query = conversationId ? "conversation=" + conversationId : "";
    const seen = new Set();  // polled events carry ids: one seen twice is dropped
    const dispatch = (item) => {
      if (item.id) {
        if (seen.has(item.id)) return;
        seen.add(item.id);
      }
      liveHandlers.forEach((handler) => {
        try { handler(item); } catch (e) { /* one handler failing leaves the others working */ }
      });
    };
    if (live.dataset.streamUrl && window.EventSource) {
      /* The server ends each stream after a while and EventSource reconnects by itself; after
         a refusal (Redis down: 503) it gives up, so this opens a new one a little later. */
      let opened = false;
      let source = null;
      const connect = () => {
        source = new EventSource(live.dataset.streamUrl + (query ? "?" + query : ""));
        source.addEventListener("open", () => {
          if (opened) reconnectHandlers.forEach((handler) => handler());  // catch up on the gap
          opened = true;
        });
        source.addEventListener("message", (message) => {
          let item = null;
          try { item = JSON.parse(message.data); } catch (e) { return; }
          dispatch(item);
        });
        source.addEventListener("error", () => {
          if (source.readyState === EventSource.CLOSED) setTimeout(connect, 10000);
        });
      };
      connect();
      window.addEventListener("pagehide", () => source.close());
      window.addEventListener("pageshow", (event) => { if (event.persisted) connect(); });
      return;
    }
    let cursor = live.dataset.cursor || "";
    let busy = false;
    const poll = async () => {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const params = [cursor ? "since=" + encodeURIComponent(cursor) : "", query].filter(Boolean);
        const data = await getJSON(live.dataset.pollUrl + "?" + params.join("&"));
        cursor = data.cursor;
        (data.events || []).forEach(dispatch);
        seen.forEach((id) => { if (id <= Number(cursor)) seen.delete(id); });
        if (data.presence) dispatch({ type: "presence.snapshot", conversation_id: conversationId, viewers: data.presence });
      } catch (e) { /* offline for a moment: the next tick tries again */ }
      finally { busy = false; }
    };
    setInterval(poll, 2000);
    /* Hidden tabs do not poll; one hidden for long may have lost old events: catch up. */
    let hiddenAt = 0;
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) { hiddenAt = Date.now(); return; }
      poll();
      if (Date.now() - hiddenAt > 60000) reconnectHandlers.forEach((handler) => handler());
    });
  }

  /* Notifications for me: the badge counts up. */
  onLive((item) => {
    if (item.type !== "notification.created" || !item.alert) return;
    let badge = $("#notification-badge");
    if (!badge) {
      const link = $("#nav-notifications");
      if (!link) return;
      badge = document.createElement("span");
      badge.id = "notification-badge";
      badge.className = "count count-alert";
      badge.textContent = "0";
      link.append(" ", badge);
    }
    badge.textContent = String((parseInt(badge.textContent, 10) || 0) + 1);
    badge.classList.remove("bump");
    void badge.offsetWidth;  // restart the animation
    badge.classList.add("bump");
  });

  /* ------------------------------------------------------------ Help overlay */
  const overlay = $("#shortcuts");
  let overlayReturn = null;
  function toggleHelp(show) {
    if (!overlay) return;
    show = show === undefined ? overlay.hidden : show;
    if (show) {
      overlayReturn = document.activeElement;
      overlay.hidden = false;
      $("#shortcuts-close").focus();
    } else {
      overlay.hidden = true;
      if (overlayReturn && overlayReturn.focus) overlayReturn.focus();
    }
  }
  if (overlay) {
    $("#shortcuts-close").addEventListener("click", () => toggleHelp(false));
    overlay.addEventListener("click", (event) => { if (event.target === overlay) toggleHelp(false); });
  }

  /* Key maps: the page fills them; one listener dispatches. */
  const keys = {
    "?": () => toggleHelp(),
    "/": () => {
      const search = $(".topsearch input");
      if (search) search.focus();
    },
  };
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && overlay && !overlay.hidden) {
      event.preventDefault();
      toggleHelp(false);
      return;
    }
    if (typing(document.activeElement) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (overlay && !overlay.hidden && event.key !== "?") return;
    const action = keys[event.key];
    if (!action) return;
    event.preventDefault();
    action(event);
  });

  /* ---------------------------------------------------------------- Inbox */
  const rows = $$("#rows .row");
  if (rows.length || $("#bulk")) setupInbox();

  function setupInbox() {
    let rows = $$("#rows .row");  // redrawn by the live inbox (inbox_live.js)
    const selectAll = $("#select-all");
    const counter = $("#selected-count");
    let checks = $$(".row-check");
    const refresh = () => {
      const chosen = checks.filter((c) => c.checked).length;
      counter.textContent = chosen ? chosen + " selected" : "Select";
      rows.forEach((row) => row.classList.toggle("selected", $(".row-check", row).checked));
      if (selectAll) selectAll.checked = chosen > 0 && chosen === checks.length;
    };
    $("#bulk").addEventListener("change", (event) => {
      if (event.target.classList.contains("row-check")) refresh();
    });
    if (selectAll) selectAll.addEventListener("change", () => {
      checks.forEach((c) => { c.checked = selectAll.checked; });
      refresh();
    });
    /* The conversation page's j/k follow this list. */
    const remember = () => {
      try {
        sessionStorage.setItem(LIST_KEY, JSON.stringify({
          list: rows.map((row) => new URL(row.dataset.href, window.location.href).pathname),
          back: window.location.pathname + window.location.search,
        }));
      } catch (e) { /* storage disabled: j/k on a conversation go back to the inbox */ }
    };
    remember();

    let cursor = -1;
    const move = (to) => {
      if (!rows.length) return;
      cursor = Math.max(0, Math.min(rows.length - 1, to));
      rows.forEach((row, i) => row.classList.toggle("cursor", i === cursor));
      rows[cursor].scrollIntoView({ block: "nearest" });
    };
    keys.j = () => move(cursor + 1);
    keys.k = () => move(cursor - 1);
    keys.Enter = (event) => {
      if (event.target.closest && event.target.closest("a, button")) {
        event.target.click();  // Enter on a link or button does what it always does
        return;
      }
      if (cursor >= 0) window.location = rows[cursor].dataset.href;
    };
    keys.x = () => {
      if (cursor < 0) return;
      const check = $(".row-check", rows[cursor]);
      check.checked = !check.checked;
      refresh();
    };

    /* Live: inbox_live.js redraws rows; the list, the cursor and the selection follow. */
    document.addEventListener("helpdesk:inbox-rows", () => {
      rows = $$("#rows .row");
      checks = $$(".row-check");
      cursor = rows.findIndex((row) => row.classList.contains("cursor"));
      refresh();
      remember();
    });
    startLive(null);
  }

  /* --------------------------------------------------------- Conversation */
  const thread = $("#thread");
  const composer = $("#composer");
  const composing = composer ? setupComposer(composer) : null;
  if (thread) setupConversation();
  else if (!rows.length && !$("#bulk")) startLive(null);

  function neighbour(step) {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(LIST_KEY) || "null"); } catch (e) { saved = null; }
    const back = (saved && saved.back) || "/inbox";
    if (!saved || !Array.isArray(saved.list)) return { href: null, back };
    const index = saved.list.indexOf(window.location.pathname);
    return { href: index < 0 ? null : saved.list[index + step] || null, back };
  }

  function setupConversation() {
    const conversationId = thread.dataset.conversationId;
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

    /* Keys: next/previous of the inbox list, resolve (and next), assign to me, snooze. */
    const go = (step) => {
      const next = neighbour(step);
      if (next.href) window.location = next.href;
      else toast(step > 0 ? "That was the last conversation of the list." : "That was the first conversation of the list.");
    };
    keys.j = () => go(1);
    keys.k = () => go(-1);
    const resolveButton = () => $('button[data-key="e"]');
    keys.e = () => { const button = resolveButton(); if (button) button.click(); };
    keys.E = () => {
      const next = neighbour(1);
      const form = $("#resolve-form");
      if (!form) { window.location = next.href || next.back; return; }
      form.elements.next.value = next.href || next.back;
      form.requestSubmit(resolveButton());
    };
    const assignToMe = () => {
      const take = $('button[data-key="t"]');
      if (take) { take.click(); return; }
      const form = $("#assign-me");
      if (form) form.requestSubmit();
      else toast("It is already yours.");
    };
    keys.a = assignToMe;
    keys.t = assignToMe;
    const snooze = $("#snooze");
    if (snooze) {
      keys.s = () => { snooze.scrollIntoView({ block: "center" }); snooze.focus(); };
      snooze.addEventListener("keydown", (event) => {
        if (event.key === "Enter") { event.preventDefault(); snooze.form.requestSubmit(); }
        else if (event.key === "Escape") snooze.blur();
      });
    }
    if (composing) {
      keys.r = () => composing.focus("reply");
      keys.n = () => composing.focus("note");
      keys["/"] = () => composing.openCanned();
    }

    /* Reply-to links, including those of messages that arrive later. */
    thread.addEventListener("click", (event) => {
      const link = event.target.closest(".js-reply");
      if (!link || !composing) return;
      event.preventDefault();
      composing.quote(link.dataset.replyTo, link.dataset.preview);
    });

    /* Newer messages, rendered by the server, appended in place. */
    const note = $("#thread-live");
    const noteText = $("#thread-live-text");
    const appending = thread.dataset.liveAppend === "1";
    let latest = Number(thread.dataset.latest) || 0;
    let fetching = false;
    let again = false;
    let stale = false;
    const nearBottom = () => thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
    const place = (node) => {
      const scheduled = $("#thread-scheduled", thread);
      if (scheduled) thread.insertBefore(node, scheduled);
      else thread.append(node);
    };
    async function fetchNewer() {
      if (!appending) {
        noteText.textContent = "New messages";
        note.hidden = false;
        return;
      }
      if (document.hidden) { stale = true; return; }
      if (fetching) { again = true; return; }
      fetching = true;
      try {
        const bottom = nearBottom();
        const nodes = fragment(await getHTML(thread.dataset.newerUrl + "?after=" + latest));
        let added = 0;
        nodes.forEach((node) => {
          const existing = node.id && document.getElementById(node.id);
          if (existing && !existing.classList.contains("scheduled")) return;
          if (existing) existing.remove();  // a scheduled message went out: it joins the thread
          if (node.dataset && node.dataset.messageId) {
            latest = Math.max(latest, Number(node.dataset.messageId));
            thread.dataset.latest = String(latest);
            node.classList.add("live-new");
            added += 1;
          }
          place(node);
        });
        if (added) {
          const empty = $(".empty", thread);
          if (empty) empty.remove();
          const scheduled = $("#thread-scheduled", thread);
          if (scheduled && !$(".msg.scheduled", thread)) scheduled.remove();
          if (bottom) thread.scrollTop = thread.scrollHeight;
          else {
            noteText.textContent = added + " new message" + (added > 1 ? "s" : "") + " below";
            note.hidden = false;
          }
        }
      } catch (e) { /* the next event or reconnect fetches again */ }
      finally {
        fetching = false;
        if (again) { again = false; fetchNewer(); }
      }
    }
    async function refreshMessage(messageId) {
      const current = document.getElementById("m" + Number(messageId));
      if (!current || current.classList.contains("scheduled")) {
        if (Number(messageId) > latest) fetchNewer();
        return;
      }
      try {
        const url = thread.dataset.messageUrl.replace("987654321", String(Number(messageId)));
        const node = fragment(await getHTML(url)).find((n) => n.id === current.id);
        if (node) current.replaceWith(node);
      } catch (e) { /* it stays as it was until the page reloads */ }
    }
    async function showNote(noteId) {
      if (document.getElementById("note" + Number(noteId))) return;  // my own, or shown already
      try {
        const url = thread.dataset.noteUrl.replace("987654321", String(Number(noteId)));
        const bottom = nearBottom();
        const node = fragment(await getHTML(url)).find((n) => n.id === "note" + Number(noteId));
        if (!node || document.getElementById(node.id)) return;
        node.classList.add("live-new");
        place(node);
        if (bottom) thread.scrollTop = thread.scrollHeight;
      } catch (e) { /* it shows on the next page load */ }
    }
    if (appending) {
      $("#thread-live-show").addEventListener("click", (event) => {
        event.preventDefault();
        thread.scrollTop = thread.scrollHeight;
        note.hidden = true;
      });
      thread.addEventListener("scroll", () => { if (nearBottom()) note.hidden = true; });
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && stale) { stale = false; fetchNewer(); }
    });
    reconnectHandlers.push(fetchNewer);

    /* The ticket as others change it: status and assignee. */
    const showTicket = (item) => {
      const pill = $("#ticket-status .pill");
      if (pill && item.status) {
        pill.className = "pill pill-" + item.status;
        pill.textContent = item.status;
      }
      const status = $("#status");
      if (status && item.status && document.activeElement !== status) status.value = item.status;
      const assignee = $("#assignee");
      if (assignee && document.activeElement !== assignee) {
        const value = item.assignee_id == null ? "" : String(item.assignee_id);
        if ($$("option", assignee).some((option) => option.value === value)) assignee.value = value;
      }
    };

    /* Presence: who else has this conversation open, and who is typing in it. */
    const presenceBox = $("#presence");
    const viewers = new Map();
    const setViewer = (viewer, now) => {
      if (!(viewer.viewing > 0)) { viewers.delete(viewer.agent_id); return; }
      viewers.set(viewer.agent_id, {
        name: viewer.name,
        viewingUntil: now + viewer.viewing * 1000,
        typingUntil: now + (viewer.typing || 0) * 1000,
      });
    };
    const snapshot = (list) => {
      const now = Date.now();
      viewers.clear();
      (list || []).forEach((viewer) => setViewer(viewer, now));
      renderPresence();
    };
    const names = (list) => list.length <= 2 ? list.join(" and ") : list.slice(0, -1).join(", ") + " and " + list[list.length - 1];
    function renderPresence() {
      const now = Date.now();
      const typists = [];
      const lookers = [];
      viewers.forEach((viewer, id) => {
        if (viewer.viewingUntil <= now) viewers.delete(id);
        else (viewer.typingUntil > now ? typists : lookers).push(viewer.name);
      });
      const parts = [];
      if (typists.length) parts.push(names(typists) + (typists.length > 1 ? " are typing…" : " is typing…"));
      if (lookers.length) parts.push(names(lookers) + (lookers.length > 1 ? " are viewing" : " is viewing"));
      presenceBox.textContent = parts.join(" · ");
      presenceBox.hidden = parts.length === 0;
      presenceBox.classList.toggle("presence-typing", typists.length > 0);
    }
    setInterval(renderPresence, 1000);

    const presenceUrl = thread.dataset.presenceUrl;
    let lastTyping = 0;
    const beat = async (state) => {
      try { snapshot((await postForm(presenceUrl, { state })).presence); } catch (e) { /* next beat */ }
    };
    beat("viewing");
    setInterval(() => beat("viewing"), 5000);
    if (composing) {
      composing.text.addEventListener("input", () => {
        if (Date.now() - lastTyping < 2000) return;
        lastTyping = Date.now();
        beat("typing");
      });
    }

    onLive((item) => {
      if (String(item.conversation_id) !== String(conversationId)) return;
      if (item.type === "message.created") {
        if (Number(item.message_id) > latest) fetchNewer();
      } else if (item.type === "message.updated") {
        refreshMessage(item.message_id);
      } else if (item.type === "note.created") {
        if (appending) showNote(item.note_id);
      } else if (item.type === "ticket.updated") {
        showTicket(item);
      } else if (item.type === "presence") {
        setViewer(item, Date.now());
        renderPresence();
      } else if (item.type === "presence.snapshot") {
        snapshot(item.viewers);
      }
    });
    startLive(conversationId);
  }

  /* ------------------------------------------------------------- Composer */
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
      reflectWindow();
      countBytes();
      text.placeholder = mode === "note"
        ? "Private note for the team: type @ to mention someone"
        : "Write a reply… type / for canned replies";
      closePicker();
    };
    $$(".mode-btn", form).forEach((b) => b.addEventListener("click", () => { setMode(b.dataset.mode); text.focus(); }));

    /* Reply to a specific message. */
    const quoting = $("#quoting", form);
    const replyTo = $("#reply-to", form);
    const cancelQuote = () => { replyTo.value = ""; quoting.hidden = true; };
    const quote = (messageId, previewText) => {
      replyTo.value = messageId;
      $("#quoting-text", form).textContent = previewText;
      quoting.hidden = false;
      setMode("reply");
      text.focus();
    };
    $("#quoting-cancel", form).addEventListener("click", (event) => { event.preventDefault(); cancelQuote(); });

    /* Unfilled canned-reply placeholders are flagged, and block sending until edited. */
    const checkPlaceholders = () => {
      const found = mode === "reply" ? (text.value.match(placeholderRe) || []) : [];
      warning.hidden = found.length === 0;
      warning.textContent = found.length
        ? "Fill in before sending: " + Array.from(new Set(found)).join(", ") : "";
      return found.length === 0;
    };
    text.addEventListener("input", checkPlaceholders);

    /* Instagram takes at most 1000 bytes of text per message (an emoji is 4): count them as
       the agent types, and past the limit offer to send the text as several messages. */
    const maxBytes = Number(form.dataset.maxBytes) || 1000;
    const byteCount = $("#byte-count", form);
    const byteOver = $("#byte-over", form);
    const splitField = $("#split", form);
    const encoder = new TextEncoder();
    const bytes = (value) => encoder.encode(value).length;
    const normalised = () => text.value.replace(/\r\n?/g, "\n").trim();
    const splitParts = (value) => {
      const pieces = [];
      const sentences = value.split(/(?<=[.!?…])\s+|\n+/).filter((p) => p.trim());
      sentences.forEach((sentence) => {
        if (bytes(sentence) <= maxBytes) { pieces.push(sentence); return; }
        sentence.split(/\s+/).forEach((word) => {
          let rest = Array.from(word);
          while (bytes(rest.join("")) > maxBytes) {
            let cut = rest.length;
            while (bytes(rest.slice(0, cut).join("")) > maxBytes) cut -= 1;
            pieces.push(rest.slice(0, cut).join(""));
            rest = rest.slice(cut);
          }
          if (rest.length) pieces.push(rest.join(""));
        });
      });
      let parts = 0;
      let current = "";
      pieces.forEach((piece) => {
        const candidate = current ? current + " " + piece : piece;
        if (bytes(candidate) <= maxBytes) { current = candidate; return; }
        parts += 1;
        current = piece;
      });
      return parts + (current ? 1 : 0);
    };
    const countBytes = () => {
      const size = bytes(normalised());
      const over = mode === "reply" && size > maxBytes;
      byteCount.textContent = size + " / " + maxBytes + " bytes";
      byteCount.classList.toggle("over", over);
      byteOver.hidden = !over;
      if (over) $("#split-parts", form).textContent = String(splitParts(normalised()));
      return !over;
    };
    text.addEventListener("input", countBytes);
    $("#split-send", form).addEventListener("click", () => {
      splitField.value = "1";
      form.requestSubmit($(".reply-btn", form));
    });

    /* When the reply window is closed only a private note can be written. */
    const windowClosed = form.hasAttribute("data-window-closed");
    const reflectWindow = () => {
      const blocked = windowClosed && mode === "reply";
      text.disabled = blocked;
      $(".reply-btn", form).disabled = windowClosed;
    };

    /* What would reach the customer by mistake is stopped here, before the server refuses it. */
    const refuse = (message) => {
      warning.hidden = false;
      warning.textContent = message;
      text.focus();
      return false;
    };
    const sendable = () => {
      const value = normalised();
      if ($$(".upload-chip[data-state=uploading]", form).length) {
        return refuse("A file is still uploading: send once it shows as attached.");
      }
      const attached = $$("input[name=attachment_url]", form).some((input) => input.value.trim()) ||
        $$("input[name=upload_id]", form).length > 0;
      if (!value && !attached) return refuse("Write a message first.");
      if (/^\/[\w-]*$/.test(value)) {
        return refuse("“" + value + "” alone would reach the customer as it is: pick a canned reply from the list, or write a message.");
      }
      if (!checkPlaceholders()) return false;
      if (!countBytes() && splitField.value !== "1") {
        return refuse("This message is over Instagram's " + maxBytes + "-byte limit: shorten it, or send it as several messages.");
      }
      return true;
    };

    /* One composition, one submission: a second Ctrl+Enter or click while the first is on its
       way does nothing (the server also keeps one message per compose token). */
    let submitted = false;
    form.addEventListener("submit", (event) => {
      const viaNote = event.submitter && event.submitter.classList.contains("note-btn");
      if (submitted) { event.preventDefault(); return; }
      if (!viaNote && mode === "reply" && !sendable()) { event.preventDefault(); splitField.value = ""; return; }
      const thread = document.getElementById("thread");
      const seen = $("#last-seen", form);
      if (thread && seen && Number(thread.dataset.latest) > Number(seen.value || 0)) seen.value = thread.dataset.latest;
      submitted = true;
      form.classList.add("sending");
    });
    window.addEventListener("pageshow", () => { submitted = false; form.classList.remove("sending"); });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit(mode === "note" ? $(".note-btn", form) : $(".reply-btn", form));
      }
    });

    setMode(mode);
    setupUploads(form, () => mode);

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

    return {
      text,
      quote,
      focus(next) { setMode(next); text.focus(); },
      /* "/" from outside the box: the reply box, a slash at the caret, the picker open. */
      openCanned() {
        setMode("reply");
        text.focus();
        const start = text.selectionStart;
        const before = text.value.slice(0, start);
        text.setRangeText(before && !/\s$/.test(before) ? " /" : "/", start, text.selectionEnd, "end");
        lookup();
      },
    };
  }

  /* --------------------------------------------------------- Files to send */
  /* The reply box takes files by its button, dropped on it, or pasted (images): each is uploaded
     at once (the server reads its type from the bytes and holds Meta's limits), then shown with
     its name, a preview for images and a remove button; the form sends their ids (upload_id). */
  function setupUploads(form, currentMode) {
    const box = $("#uploads", form);
    if (!box) return;
    const input = $("#upload-input", box);
    const list = $("#upload-list", box);
    const error = $("#upload-error", box);
    const MB = 1000000;
    const ICONS = { image: "🖼", video: "🎬", audio: "🎵" };
    const showError = (message) => { error.textContent = message; error.hidden = !message; };
    const sizeText = (bytes) => (bytes >= MB ? (bytes / MB).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1000)) + " KB");
    const wire = (chip) => {
      $(".upload-remove", chip).addEventListener("click", () => {
        chip.remove();
        showError("");
        $("#composer-text", form).focus();
      });
    };
    $$(".upload-chip", list).forEach(wire);

    function chipFor(file, name) {
      const chip = document.createElement("li");
      chip.className = "upload-chip";
      chip.dataset.state = "uploading";
      let visual;
      if (/^image\/(png|jpeg|gif)$/.test(file.type)) {
        visual = document.createElement("img");
        visual.className = "upload-thumb";
        visual.alt = "";
        const reader = new FileReader();  // a data: URL, which the page's CSP allows for images
        reader.addEventListener("load", () => { visual.src = reader.result; });
        reader.readAsDataURL(file);
      } else {
        visual = document.createElement("span");
        visual.className = "upload-icon";
        visual.setAttribute("aria-hidden", "true");
        visual.textContent = ICONS[(file.type || "").split("/")[0]] || "📄";
      }
      const label = document.createElement("span");
      label.className = "upload-name";
      label.textContent = name;
      label.title = name;
      const size = document.createElement("span");
      size.className = "upload-size muted";
      size.textContent = sizeText(file.size);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "upload-remove";
      remove.title = "Remove";
      remove.setAttribute("aria-label", "Remove " + name);
      remove.textContent = "×";
      chip.append(visual, label, size, remove);
      wire(chip);
      return chip;
    }

    const refusal = (data, status) => {
      const problem = data && data.error;
      const fields = problem && problem.fields;
      if (fields) {
        const first = Object.values(fields)[0];
        return Array.isArray(first) ? first[0] : String(first);
      }
      if (problem && problem.message) return problem.message;
      return status === 413 ? "the file is too large for Instagram" : "the upload failed (HTTP " + status + ")";
    };

    async function upload(file) {
      const name = file.name || "pasted image";
      const image = /^image\//.test(file.type);
      if (file.size > 25 * MB || (image && file.size > 8 * MB)) {
        showError("“" + name + "” is " + sizeText(file.size) + ": Instagram takes images up to 8 MB, and video, audio and PDF files up to 25 MB.");
        return;
      }
      if (list.children.length >= 10) {
        showError("A reply takes at most 10 files.");
        return;
      }
      const chip = chipFor(file, name);
      list.append(chip);
      showError("");
      const body = new FormData();
      body.append("csrf_token", csrfToken());
      body.append("file", file, file.name || "pasted-image." + ((file.type.split("/")[1] || "png").replace("jpeg", "jpg")));
      try {
        const response = await fetch(box.dataset.uploadUrl, {
          method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" },
        });
        const data = await response.json().catch(() => null);
        if (!response.ok || !data || !data.id) throw new Error(refusal(data, response.status));
        if (!chip.isConnected) return;  // removed while it was uploading
        const hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = "upload_id";
        hidden.value = String(data.id);
        chip.prepend(hidden);
        chip.dataset.state = "done";
        chip.dataset.type = data.type;
      } catch (e) {
        chip.remove();
        showError("“" + name + "” was not attached: " + e.message);
      }
    }
    const take = (files) => {
      if (currentMode() !== "reply") {
        toast("Files go with replies: switch to Reply to attach them.");
        return;
      }
      Array.from(files).forEach(upload);
    };

    $("#upload-pick", box).addEventListener("click", () => input.click());
    input.addEventListener("change", () => { take(input.files); input.value = ""; });
    const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
    form.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      form.classList.add("dropping");
    });
    form.addEventListener("dragleave", (event) => {
      if (!form.contains(event.relatedTarget)) form.classList.remove("dropping");
    });
    form.addEventListener("drop", (event) => {
      form.classList.remove("dropping");
      if (!carriesFiles(event)) return;
      event.preventDefault();
      take(event.dataTransfer.files);
    });
    $("#composer-text", form).addEventListener("paste", (event) => {
      const files = Array.from((event.clipboardData && event.clipboardData.files) || []);
      if (!files.length) return;  // text is pasted as text
      event.preventDefault();
      take(files);
    });
  }
})();
