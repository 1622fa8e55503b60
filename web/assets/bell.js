/*
 * The notifications bell in the shared nav: an unread badge and a dropdown
 * list fed by GET /api/notifications and kept live by an EventSource on
 * /api/notifications/stream. app.js renders the nav with an empty
 * `.nav-bell-slot` for logged-in users, loads this file, and fires
 * `motorpool:nav` whenever it re-renders the nav; the bell mounts into the
 * slot each time and keeps its state (and its stream) across re-renders.
 *
 * EventSource cannot send an Authorization header, so the access token goes
 * in the query string; the server ends the stream when that token expires,
 * and the bell reconnects with a fresh one.
 *
 * Untrusted text (notification titles and bodies) is only ever written with
 * textContent, never innerHTML.
 */
(() => {
  "use strict";

  const mp = window.motorpool;
  if (!mp) return;
  const { api, auth, el } = mp;

  const PAGE_SIZE = 20;
  const RETRY_MIN_MS = 2_000;
  const RETRY_MAX_MS = 60_000;

  const state = {
    items: [], // newest first
    unread: 0,
    open: false,
    source: null,
    retryMs: RETRY_MIN_MS,
    retryTimer: null,
    loaded: false,
  };

  let nodes = null; // the mounted elements, rebuilt on each mount

  // ----------------------------------------------------------------- data

  async function load() {
    try {
      const page = await api(`/api/notifications?limit=${PAGE_SIZE}`);
      state.items = Array.isArray(page.items) ? page.items : [];
      state.unread = Number(page.unreadCount) || 0;
      state.loaded = true;
      render();
      return true;
    } catch (err) {
      if (err.status === 401) disconnect();
      return false;
    }
  }

  function received(item) {
    if (!item || !item.id || state.items.some((n) => n.id === item.id)) return;
    state.items.unshift(item);
    state.items.length = Math.min(state.items.length, PAGE_SIZE);
    if (!item.readAt) state.unread += 1;
    render();
  }

  async function markRead(item) {
    if (item.readAt) return;
    try {
      await api(`/api/notifications/${encodeURIComponent(item.id)}/read`, { method: "POST" });
      item.readAt = new Date().toISOString();
      state.unread = Math.max(0, state.unread - 1);
      render();
    } catch (err) {
      mp.notify(err.message || "Could not mark the notification read.", "error");
    }
  }

  async function markAllRead() {
    try {
      await api("/api/notifications/read-all", { method: "POST" });
      const now = new Date().toISOString();
      for (const item of state.items) if (!item.readAt) item.readAt = now;
      state.unread = 0;
      render();
    } catch (err) {
      mp.notify(err.message || "Could not mark the notifications read.", "error");
    }
  }

  // ------------------------------------------------------------------ live

  function connect() {
    if (state.source || state.retryTimer || !auth.accessToken) return;
    const url = `/api/notifications/stream?access_token=${encodeURIComponent(auth.accessToken)}`;
    const source = new EventSource(url);
    state.source = source;
    // The list is (re)read once the stream is open, so nothing made between the
    // first load and the connection is missed; the stream brings the rest.
    source.addEventListener("open", () => {
      state.retryMs = RETRY_MIN_MS;
      load();
    });
    source.addEventListener("notification", (event) => {
      try { received(JSON.parse(event.data)); } catch { /* ignore a malformed event */ }
    });
    source.addEventListener("error", () => {
      // Covers an expired token (the server ends the stream) and network loss:
      // reconnect ourselves, after a request that refreshes the token.
      source.close();
      state.source = null;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (state.retryTimer) return;
    const delay = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    state.retryTimer = setTimeout(async () => {
      state.retryTimer = null;
      if (!auth.isLoggedIn()) return;
      // api() refreshes an expired access token before the stream needs it.
      if (await load()) connect();
      else if (auth.isLoggedIn()) scheduleReconnect();
    }, delay);
  }

  function disconnect() {
    if (state.source) state.source.close();
    state.source = null;
    if (state.retryTimer) clearTimeout(state.retryTimer);
    state.retryTimer = null;
  }

  // ------------------------------------------------------------- rendering

  function bellIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "20");
    svg.setAttribute("height", "20");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z");
    svg.append(path);
    return svg;
  }

  function formatTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
  }

  function mount(slot) {
    const count = el("span", { id: "nav-bell-count", class: "bell-count", hidden: true });
    const button = el("button", {
      id: "nav-bell",
      type: "button",
      class: "bell-button",
      "aria-haspopup": "true",
      "aria-expanded": "false",
      "aria-controls": "notification-panel",
      title: "Notifications",
    }, bellIcon(), el("span", { class: "visually-hidden" }, "Notifications"), count);
    const list = el("ul", { id: "notification-list", class: "bell-list", "aria-live": "polite" });
    const markAll = el("button", { id: "notification-mark-all", type: "button", class: "secondary" }, "Mark all read");
    const panel = el("div", { id: "notification-panel", class: "bell-panel", role: "region", "aria-label": "Notifications", hidden: true },
      el("div", { class: "bell-panel-head" }, el("strong", {}, "Notifications"), markAll),
      list,
    );
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      setOpen(!state.open);
    });
    markAll.addEventListener("click", (event) => {
      event.stopPropagation();
      markAllRead();
    });
    panel.addEventListener("click", (event) => event.stopPropagation());
    slot.replaceChildren(el("div", { class: "bell" }, button, panel));
    nodes = { button, count, panel, list, markAll };
    render();
  }

  function setOpen(open) {
    state.open = open;
    if (open && !state.loaded) load();
    render();
  }

  function render() {
    if (!nodes) return;
    const { button, count, panel, list, markAll } = nodes;
    count.textContent = state.unread > 0 ? (state.unread > 99 ? "99+" : String(state.unread)) : "";
    count.hidden = state.unread === 0;
    button.setAttribute("aria-expanded", String(state.open));
    button.title = state.unread > 0 ? `Notifications (${state.unread} unread)` : "Notifications";
    panel.hidden = !state.open;
    markAll.disabled = state.unread === 0;

    if (!state.items.length) {
      list.replaceChildren(el("li", { class: "bell-empty" }, state.loaded ? "No notifications yet." : "Loading…"));
      return;
    }
    list.replaceChildren(...state.items.map((item) => {
      const entry = el("button", { type: "button", class: "bell-item-button", title: item.readAt ? null : "Mark as read" },
        el("span", { class: "bell-item-title" }, item.title || ""),
        el("span", { class: "bell-item-body" }, item.body || ""),
        el("time", { class: "bell-item-time", datetime: item.createdAt || null }, formatTime(item.createdAt)),
      );
      entry.addEventListener("click", () => markRead(item));
      return el("li", { class: item.readAt ? "bell-item" : "bell-item is-unread", "data-id": item.id }, entry);
    }));
  }

  // --------------------------------------------------------------- wiring

  function sync() {
    const slot = document.querySelector(".nav-bell-slot");
    if (!slot || !auth.isLoggedIn()) {
      nodes = null;
      disconnect();
      state.items = [];
      state.unread = 0;
      state.loaded = false;
      state.open = false;
      return;
    }
    mount(slot);
    if (!state.loaded) load();
    connect();
  }

  document.addEventListener("motorpool:nav", sync);
  document.addEventListener("click", () => { if (state.open) setOpen(false); });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.open) {
      setOpen(false);
      nodes?.button.focus();
    }
  });
  window.addEventListener("pagehide", disconnect);
  sync();
})();
