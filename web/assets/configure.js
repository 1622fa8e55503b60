/*
 * The car configurator: the catalog's groups and options, each showing its live state
 * (selected, available, required, unavailable, with the rules behind it), the price line by
 * line and the cheapest complete car, conflicts explained with the least change that resolves
 * them, and saving with a share link. `?share=<code>` shows a saved configuration read-only.
 * A logged-in user can order a saved car from the factory and is taken to its tracking page.
 *
 * Every pick goes over the configurator WebSocket and the server answers with the whole state,
 * so the page never decides a rule itself. The session id is kept in sessionStorage: a reload
 * or a reconnect continues the same configuration on whichever replica answers.
 *
 * Untrusted text (catalog data, API messages) is only ever written with textContent.
 */
(() => {
  "use strict";

  const SESSION_KEY = "configuratorSession";
  const RETRY_MIN_MS = 1_000;
  const RETRY_MAX_MS = 30_000;
  const SYMBOLS = { EUR: "€" };

  const byId = (id) => document.getElementById(id);

  /** Minor units as money: 4549000 -> "45,490.00 €". */
  function money(minor, currency) {
    const n = Number(minor);
    if (!Number.isFinite(n)) return "–";
    const abs = Math.abs(Math.round(n));
    const units = String(Math.floor(abs / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const cents = String(abs % 100).padStart(2, "0");
    return `${n < 0 ? "−" : ""}${units}.${cents} ${SYMBOLS[currency] || currency || ""}`.trim();
  }

  /** A decimal money string in minor units ("53200.00" -> 5320000); NaN if it is not one. */
  function minorOf(decimal) {
    const m = /^(-?)(\d+)(?:\.(\d{1,2}))?$/.exec(String(decimal));
    if (!m) return Number.NaN;
    const value = Number(m[2]) * 100 + Number((m[3] || "0").padEnd(2, "0"));
    return m[1] ? -value : value;
  }

  // sessionStorage can throw (privacy modes, disabled storage); the page then just forgets.
  const session = {
    get() { try { return window.sessionStorage.getItem(SESSION_KEY); } catch { return null; } },
    set(id) { try { window.sessionStorage.setItem(SESSION_KEY, id); } catch { /* not remembered */ } },
    forget() { try { window.sessionStorage.removeItem(SESSION_KEY); } catch { /* nothing kept */ } },
  };

  const reasons = (because) => (because && Array.isArray(because.rules) ? because.rules.map((r) => r.message) : []);

  function configure(mp) {
    const { api, auth, el } = mp;

    const state = {
      catalog: null,
      options: new Map(), // code -> catalog option
      packageRules: new Set(), // ids of the rules that make a package include options
      reports: new Map(), // code -> the option's latest report from the server
      current: null, // the latest `state` message
      socket: null,
      connected: false,
      retryMs: RETRY_MIN_MS,
      retryTimer: null,
      conflict: null, // the option of the conflict on show
      saving: false,
      savedId: null, // the configuration saved last, while its panel shows
      owned: false, // the socket carries the user's token: saves are kept in their account
      ordering: false,
    };

    const currency = () => state.catalog?.currency || "EUR";
    const nameOf = (code) => state.options.get(code)?.name || code;

    function learnCatalog(catalog) {
      state.catalog = catalog;
      state.options = new Map((catalog.options || []).map((o) => [o.code, o]));
      state.packageRules = new Set((catalog.rules || []).filter((r) => r.kind === "package").map((r) => r.id));
    }

    // ------------------------------------------------------------ options

    function optionPrice(option) {
      if (option.group === "model") return money(option.price, currency());
      return option.price > 0 ? `+${money(option.price, currency())}` : "no extra cost";
    }

    function optionButton(option) {
      const button = el("button", { type: "button", id: `opt-${option.code}`, class: "option", "aria-pressed": "false", "data-state": "available" },
        el("span", { class: "option-mark", "aria-hidden": "true" }),
        el("span", { class: "option-name" }, option.name),
        el("span", { class: "option-price" }, optionPrice(option)),
        el("span", { class: "option-badge" }),
      );
      button.addEventListener("click", () => choose(option.code));
      return button;
    }

    function renderGroups() {
      const options = state.catalog.options || [];
      const groups = (state.catalog.groups || []).map((group) => {
        const single = Boolean(group.choice && group.choice.single);
        const required = single && group.choice.single.required;
        const how = single ? (required ? "Choose one" : "Choose one, or none") : "Choose any";
        const members = options.filter((o) => o.group === group.code);
        return el("fieldset", { class: `group ${single ? "is-single" : "is-multiple"}`, id: `group-${group.code}` },
          el("legend", {}, group.name, el("span", { class: "hint" }, ` · ${how}`)),
          el("ul", { class: "option-list" }, ...members.map((o) => el("li", {}, optionButton(o)))),
        );
      });
      byId("groups").replaceChildren(...groups);
    }

    const BADGES = { unavailable: "Not available" };

    function renderOption(report) {
      const button = byId(`opt-${report.option}`);
      if (!button) return;
      const because = reasons(report.because);
      button.dataset.state = report.state;
      button.setAttribute("aria-pressed", String(report.state === "selected"));
      let badge = BADGES[report.state] || "";
      let title = "";
      if (report.state === "required") {
        const included = (report.because?.rules || []).some((r) => state.packageRules.has(r.id));
        badge = included ? "Included" : "Required";
        title = because.join(" ") || "Every complete car with your choices has it.";
      } else if (report.state === "unavailable") {
        title = because.join(" ") || "It does not fit your current choices.";
      }
      button.querySelector(".option-badge").textContent = badge;
      if (title) button.title = title;
      else button.removeAttribute("title");
    }

    function choose(code) {
      if (!state.connected) return;
      hideConflict();
      hideSaved();
      const selected = state.reports.get(code)?.state === "selected";
      send({ type: selected ? "unpick" : "pick", option: code });
    }

    // -------------------------------------------------------------- price

    function priceRow(line) {
      const amount = line.kind === "included" ? "included" : money(line.amount, currency());
      const note = line.kind === "included" && line.package ? el("div", { class: "hint" }, `with the ${nameOf(line.package)}`) : null;
      return el("tr", { class: `line-${line.kind}` }, el("td", {}, line.label, note), el("td", { class: "num" }, amount));
    }

    function renderPrice(m) {
      const price = m.price || { lines: [], total: 0 };
      const lines = Array.isArray(price.lines) ? price.lines : [];
      byId("price-lines").replaceChildren(...lines.map(priceRow));
      byId("price-empty").hidden = lines.length > 0;
      byId("price-total").textContent = money(price.total, price.currency || currency());
      const cheapest = m.cheapest && m.cheapest.price;
      byId("cheapest-label").hidden = !cheapest;
      byId("cheapest-total").hidden = !cheapest;
      byId("cheapest-total").textContent = cheapest
        ? `${m.cheapest.isCheapest ? "" : "about "}${money(cheapest.total, cheapest.currency || currency())}`
        : "";
      byId("cheapest-hint").hidden = !cheapest || m.isValid;
    }

    function renderState(m) {
      state.current = m;
      if (m.session) session.set(m.session);
      state.reports = new Map((m.options || []).map((r) => [r.option, r]));
      (m.options || []).forEach(renderOption);
      byId("groups").removeAttribute("aria-busy");
      renderPrice(m);
      if (m.isConsistent === false) {
        const why = reasons(m.conflict).join(" ");
        mp.showMessage("configure-message", `Your choices no longer fit together${why ? `: ${why}` : "."} Change or remove one.`, "error");
      }
      updateButtons();
    }

    function updateButtons() {
      const picks = state.current?.picks || [];
      byId("save").disabled = !state.connected || state.saving || picks.length === 0 || !state.current?.cheapest;
      byId("reset").disabled = !state.connected || picks.length === 0;
    }

    // ----------------------------------------------------------- conflict

    function showConflict(m) {
      const fix = m.fix || {};
      const name = nameOf(m.option);
      const blocked = reasons(state.reports.get(m.option)?.because);
      state.conflict = m.option;
      const changes = [];
      if (fix.outcome === "impossible") {
        byId("conflict-summary").textContent = `“${name}” cannot be had in any configuration.`;
        byId("conflict-reasons").textContent = reasons(fix.because).join(" ");
      } else {
        byId("conflict-summary").textContent = `To have “${name}”, your configuration changes:`;
        // One line per option: names hold commas ("3.0 V6 petrol, 340 hp").
        (fix.replaced || []).forEach((code) => changes.push(`Replaces ${nameOf(code)}`));
        (fix.dropped || []).forEach((code) => changes.push(`Removes ${nameOf(code)}`));
        (fix.forced || []).forEach((code) => changes.push(`Brings in ${nameOf(code)}`));
        byId("conflict-reasons").textContent = blocked.join(" ");
      }
      byId("conflict-changes").replaceChildren(...changes.map((c) => el("li", {}, c)));
      byId("conflict-apply").hidden = fix.outcome === "impossible";
      byId("conflict").hidden = false;
      (fix.outcome === "impossible" ? byId("conflict-cancel") : byId("conflict-apply")).focus();
    }

    function hideConflict() {
      state.conflict = null;
      byId("conflict").hidden = true;
    }

    function applyConflict() {
      const option = state.conflict;
      hideConflict();
      if (option && state.connected) send({ type: "pick", option, resolve: true });
    }

    // --------------------------------------------------------------- save

    function save() {
      if (!state.connected) return;
      hideSaved();
      state.saving = true;
      updateButtons();
      send({ type: "save" });
    }

    function showSaved(m) {
      state.saving = false;
      updateButtons();
      const path = `/configure.html?share=${encodeURIComponent(m.shareCode)}`;
      byId("saved-id").textContent = m.configId;
      byId("saved-price").textContent = m.price ? money(minorOf(m.price.amount), m.price.currency) : "–";
      const link = byId("share-link");
      link.href = path;
      link.textContent = `${window.location.origin}${path}`;
      state.savedId = m.configId;
      byId("order").hidden = !state.owned;
      byId("order").disabled = false;
      const hint = byId("order-hint");
      hint.hidden = state.owned;
      hint.replaceChildren(...(state.owned ? [] : [
        el("a", { id: "order-login-link", href: `/login.html?next=${encodeURIComponent("/configure.html")}` }, "Log in"),
        " and save again to order this car from the factory.",
      ]));
      byId("saved").hidden = false;
    }

    function hideSaved() {
      state.savedId = null;
      byId("saved").hidden = true;
      mp.clearMessage("order-error");
    }

    // -------------------------------------------------------------- order

    function orderProblem(err) {
      const problem = err.problem || {};
      const box = byId("order-error");
      if (problem.code === "insufficient_funds" || problem.code === "payment_declined") {
        const lead = problem.code === "insufficient_funds"
          ? "There is not enough money in your wallet for the deposit."
          : "The payment of the deposit was declined.";
        const detail = String(problem.detail || "");
        box.className = "message error";
        box.replaceChildren(...[
          el("p", {}, lead),
          detail ? el("p", { class: "hint" }, `${detail.charAt(0).toUpperCase()}${detail.slice(1)}.`) : null,
          el("p", {}, el("a", { id: "order-wallet-link", href: "/wallet.html" }, "Top up your wallet"), ", then order again."),
        ].filter(Boolean));
        return;
      }
      mp.showProblem(box, err);
    }

    async function order() {
      const configId = state.savedId;
      if (!configId || state.ordering) return;
      const button = byId("order");
      state.ordering = true;
      button.disabled = true;
      mp.clearMessage("order-error");
      try {
        const me = await mp.currentUser();
        if (!me || !me.id) throw new Error("Log in to order this car.");
        const placed = await api("/api/factory/order", { method: "POST", body: { configId, userId: me.id } });
        // The button stays disabled: the page is on its way to the order.
        window.location.assign(`/factory.html?order=${encodeURIComponent(placed.orderId)}`);
        return;
      } catch (err) {
        orderProblem(err);
      }
      state.ordering = false;
      button.disabled = false;
    }

    // ------------------------------------------------------------- socket

    function setConnection(name, text) {
      const p = byId("live-connection");
      p.dataset.state = name;
      p.textContent = text;
    }

    function send(message) {
      mp.clearMessage("configure-message");
      state.socket.send(JSON.stringify(message));
    }

    function onMessage(event) {
      let m;
      try { m = JSON.parse(event.data); } catch { return; }
      switch (m.type) {
        case "state": renderState(m); break;
        case "conflict": showConflict(m); break;
        case "saved": showSaved(m); break;
        case "error": {
          state.saving = false;
          updateButtons();
          const why = reasons(m.because).join(" ");
          mp.showMessage("configure-message", `${m.message || "Something went wrong."}${why ? ` ${why}` : ""}`, "error");
          break;
        }
        default: break;
      }
    }

    /** A token the server will accept, or null to configure anonymously. */
    async function freshToken() {
      if (!auth.isLoggedIn()) return null;
      try {
        // api() refreshes an expiring access token first, and once more after a 401.
        await api("/api/auth/me");
      } catch (err) {
        if (err.status === 401) return null;
      }
      return auth.accessToken;
    }

    async function connect() {
      if (state.socket) return;
      clearTimeout(state.retryTimer);
      state.retryTimer = null;
      setConnection("connecting", "Connecting…");
      const token = await freshToken();
      if (state.socket) return;
      const params = new URLSearchParams();
      const resumed = session.get();
      if (resumed) params.set("session", resumed);
      if (token) params.set("access_token", token);
      state.owned = Boolean(token);
      byId("save-owner").replaceChildren(token
        ? "Saved configurations are kept in your account."
        : el("span", {}, el("a", { href: `/login.html?next=${encodeURIComponent("/configure.html")}` }, "Log in"), " to keep saved configurations in your account."));
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      const query = params.toString();
      let socket;
      try {
        socket = new WebSocket(`${scheme}//${window.location.host}/api/configure/ws${query ? `?${query}` : ""}`);
      } catch {
        scheduleReconnect();
        return;
      }
      state.socket = socket;
      let opened = false;
      socket.addEventListener("open", () => {
        if (state.socket !== socket) return;
        opened = true;
        state.connected = true;
        state.retryMs = RETRY_MIN_MS;
        setConnection("connected", "Live prices on.");
        updateButtons();
      });
      socket.addEventListener("message", (event) => {
        if (state.socket === socket) onMessage(event);
      });
      socket.addEventListener("close", () => {
        if (state.socket !== socket) return;
        state.socket = null;
        state.connected = false;
        state.saving = false;
        hideConflict();
        updateButtons();
        if (!opened && resumed) forgetSessionIfGone();
        else scheduleReconnect();
      });
    }

    // A socket that never opened with a remembered session: the session may have expired (the
    // server refuses it) or the server may be unreachable, which the browser does not tell apart.
    // Only when the server answers otherwise is the session dropped and a new one started.
    async function forgetSessionIfGone() {
      try {
        await api("/api/configure/catalog", { auth: false });
      } catch {
        scheduleReconnect();
        return;
      }
      session.forget();
      mp.showMessage("configure-message", "Your earlier configuration has expired; starting a new one.", "info");
      connect();
    }

    function scheduleReconnect() {
      if (state.retryTimer) return;
      const delay = state.retryMs;
      state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
      setConnection("offline", `Live prices paused; reconnecting in ${Math.round(delay / 1000)} s…`);
      state.retryTimer = setTimeout(() => { state.retryTimer = null; connect(); }, delay);
    }

    // ------------------------------------------------------------- shared

    async function showShared(code) {
      byId("configure-title").textContent = "Shared configuration";
      byId("configure-intro").textContent = "A read-only copy of a saved configuration.";
      byId("shared").hidden = false;
      let shared;
      try {
        shared = await api(`/api/configure/shared/${encodeURIComponent(code)}`, { auth: false });
      } catch (err) {
        byId("shared").hidden = true;
        if (err.status === 404) {
          const box = byId("configure-message");
          mp.showMessage(box, "No configuration is shared under this link.", "error");
          box.append(el("p", {}, el("a", { href: "/configure.html" }, "Configure your own car")));
        } else {
          mp.showProblem("configure-message", err);
        }
        return;
      }
      // Names for the option codes; the copy is still worth showing without them.
      try { learnCatalog(await api("/api/configure/catalog", { auth: false })); } catch { /* codes stay */ }
      byId("shared-model").textContent = nameOf(shared.model);
      byId("shared-engine").textContent = shared.engine || "–";
      byId("shared-color").textContent = shared.color || "–";
      byId("shared-interior").textContent = shared.interior || "–";
      // Names hold commas ("3.0 V6 petrol, 340 hp"), so lists are lists.
      const list = (items) => (items.length ? el("ul", { class: "plain-list" }, ...items.map((i) => el("li", {}, i))) : "None");
      byId("shared-features").replaceChildren(list(shared.features || []));
      byId("shared-options").replaceChildren(list((shared.options || []).map(nameOf)));
      byId("shared-price").textContent = money(minorOf(shared.price), shared.currency);
      const created = new Date(shared.createdAt);
      byId("shared-created").textContent = Number.isNaN(created.getTime()) ? shared.createdAt || "" : created.toLocaleString();
    }

    // --------------------------------------------------------------- boot

    async function startConfigurator() {
      byId("configurator").hidden = false;
      try {
        learnCatalog(await api("/api/configure/catalog", { auth: false }));
      } catch (err) {
        mp.showProblem("configure-message", err);
        setConnection("offline", "The catalog could not be loaded; reload the page to try again.");
        return;
      }
      renderGroups();
      byId("conflict-apply").addEventListener("click", applyConflict);
      byId("conflict-cancel").addEventListener("click", hideConflict);
      byId("save").addEventListener("click", save);
      byId("order").addEventListener("click", order);
      byId("reset").addEventListener("click", () => {
        if (!state.connected) return;
        hideConflict();
        hideSaved();
        send({ type: "reset" });
      });
      connect();
    }

    const share = new URLSearchParams(window.location.search).get("share");
    if (share) showShared(share);
    else startConfigurator();
  }

  function ready(fn) {
    if (window.motorpool) fn(window.motorpool);
    else document.addEventListener("DOMContentLoaded", () => fn(window.motorpool));
  }

  ready((mp) => {
    if (document.body.dataset.page === "configure") configure(mp);
  });
})();
