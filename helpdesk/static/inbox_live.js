/* DM Helpdesk console: the live inbox. When live events (heard by console.js and passed on as
   "helpdesk:live" DOM events) concern conversations, the page asks the server for its own listing
   again: the ids of its page in order, the changed rows rendered with the page's own row macro,
   and the folder and view counts. Rows are then redrawn, moved to their place in the sort,
   added or dropped, and the counts set, without a reload. Server-rendered rows are parsed inert
   with DOMParser and adopted; nothing here runs code from a response. */
(function () {
  "use strict";

  const list = document.getElementById("rows");
  const live = document.getElementById("live");
  if (!list || !live || !live.dataset.inboxUpdatesUrl) return;

  const KINDS = new Set(["message.created", "ticket.updated", "conversation.updated"]);
  const WAIT_MS = 150;  // events arriving together make one request
  const empty = document.getElementById("rows-empty");
  const banner = document.getElementById("inbox-live");
  const bannerText = document.getElementById("inbox-live-count");
  const changed = new Set();
  let everything = false;
  let timer = null;
  let busy = false;
  let again = false;
  let failures = 0;

  const shownRows = () => Array.from(list.querySelectorAll(":scope > .row"));
  const idOf = (row) => Number(row.dataset.conversationId);

  function rowNodes(rendered) {
    const nodes = new Map();
    Object.keys(rendered || {}).forEach((id) => {
      const doc = new DOMParser().parseFromString("<ul>" + rendered[id] + "</ul>", "text/html");
      const row = doc.querySelector("ul > li.row");
      if (row) nodes.set(Number(id), document.importNode(row, true));
    });
    return nodes;
  }

  /* A redrawn row keeps what the agent was doing with it: the selection and the j/k cursor. */
  function carryOver(from, to) {
    const before = from.querySelector(".row-check");
    const after = to.querySelector(".row-check");
    if (before && after) after.checked = before.checked;
    ["cursor", "selected"].forEach((name) => {
      if (from.classList.contains(name)) to.classList.add(name);
    });
  }

  function apply(data) {
    const order = (data.order || []).map(Number);
    const wanted = new Set(order);
    const fresh = rowNodes(data.rows);
    const nodes = new Map();
    shownRows().forEach((row) => {
      const id = idOf(row);
      if (!wanted.has(id)) { row.remove(); return; }  // it left this view
      const redrawn = fresh.get(id);
      if (redrawn) {
        carryOver(row, redrawn);
        redrawn.classList.add("live-changed");
        row.replaceWith(redrawn);
        nodes.set(id, redrawn);
      } else {
        nodes.set(id, row);
      }
    });
    fresh.forEach((row, id) => {
      if (nodes.has(id)) return;
      row.classList.add("live-changed");  // it came into this view
      nodes.set(id, row);
    });
    /* Into the server's order, moving only the rows that are out of place. */
    let next = list.firstElementChild;
    order.forEach((id) => {
      const row = nodes.get(id);
      if (!row) return;
      if (row === next) next = next.nextElementSibling;
      else list.insertBefore(row, next);
    });
    list.hidden = order.length === 0;
    if (empty) empty.hidden = order.length > 0;
    setCounts("folder", data.folder_counts);
    setCounts("view", data.view_counts);
    document.dispatchEvent(new CustomEvent("helpdesk:inbox-rows"));
  }

  function setCounts(kind, counts) {
    document.querySelectorAll('[data-count^="' + kind + ':"]').forEach((el) => {
      const key = el.dataset.count.slice(kind.length + 1);
      const value = counts && Object.prototype.hasOwnProperty.call(counts, key) ? counts[key] : 0;
      const count = el.querySelector(".count");
      if (count && count.textContent !== String(value)) count.textContent = String(value);
    });
  }

  async function update() {
    if (busy) { again = true; return; }
    busy = true;
    const shown = shownRows().map(idOf);
    const ids = everything ? shown.concat(Array.from(changed)) : Array.from(changed);
    changed.clear();
    everything = false;
    const params = new URLSearchParams(list.dataset.query || "");
    params.set("ids", Array.from(new Set(ids)).slice(0, 200).join(","));
    params.set("shown", shown.join(","));
    try {
      const response = await fetch(live.dataset.inboxUpdatesUrl + "?" + params.toString(), {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      apply(await response.json());
      failures = 0;
      if (banner) banner.hidden = true;
    } catch (e) {
      failures += 1;
      ids.forEach((id) => changed.add(id));  // asked again with the next event
      if (failures >= 3 && banner && bannerText) {
        bannerText.textContent = "This list may be out of date";
        banner.hidden = false;
      }
    } finally {
      busy = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    if (timer) return;
    timer = setTimeout(() => { timer = null; update(); }, WAIT_MS);
  }

  document.addEventListener("helpdesk:live", (event) => {
    const item = event.detail || {};
    if (!KINDS.has(item.type) || !item.conversation_id) return;
    changed.add(Number(item.conversation_id));
    schedule();
  });
  /* Back after a gap (a dropped stream, a long hidden tab): redraw the whole page. */
  document.addEventListener("helpdesk:live-reconnect", () => {
    everything = true;
    schedule();
  });
})();
