/*
 * The parts shop: catalog search, product view, a cart whose changes are confirmed
 * live over the cart WebSocket, checkout from the wallet, and the user's orders.
 *
 * Every cart change is a message with a client-chosen requestId. The server answers
 * "pending" at once and "confirmed"/"rejected" once inventory has decided, with the
 * whole cart. Requests without an outcome are sent again after a reconnect: the server
 * answers a repeated requestId with its stored outcome, so nothing happens twice.
 *
 * Checkout sends a fresh Idempotency-Key per click, except after an answer that left the
 * outcome open (network error, 5xx: the order may be pending): the next click then asks
 * again with the same key and gets the first checkout's answer. The button stays disabled
 * while a checkout is in flight, so a double click cannot pay twice.
 *
 * Untrusted text (catalog data, API messages) is only ever written with textContent.
 */
(() => {
  "use strict";

  const PAGE_SIZE = 24;
  const ORDERS_PAGE = 10;
  const SEARCH_DEBOUNCE_MS = 300;
  const RETRY_MIN_MS = 1_000;
  const RETRY_MAX_MS = 30_000;
  const LOG_SIZE = 6;
  const PENDING_ORDER_POLLS = 5;

  const fmt = (m) => (m ? `${m.amount} ${m.currency}` : "–");
  const time = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  };
  const byId = (id) => document.getElementById(id);

  const REQUEST_STATES = { pending: "Pending", confirmed: "Confirmed", rejected: "Rejected" };
  const ORDER_STATES = { placed: "Placed", pending: "Processing", failed: "Failed" };

  const ORDER_FAILURES = {
    insufficient_funds: "Not enough money in your wallet.",
    payment_declined: "The payment was declined.",
    out_of_stock: "A part ran out of stock.",
    checkout_failed: "The parts could not be reserved; the payment was refunded.",
  };

  const REASONS = {
    out_of_stock: "out of stock",
    hold_limit_exceeded: "your cart holds as many units as it may",
    not_found: "not in the catalog or not in your cart",
    invalid_state: "a checkout is in progress",
    validation_failed: "the quantity must be between 1 and 100",
    unavailable: "the shop could not reach inventory; try again",
    peer_unavailable: "the shop could not reach inventory; try again",
    conflict: "the cart is busy; try again",
    bad_request: "the request was malformed",
    too_many_requests: "too many changes at once; try again",
  };

  function shop(mp) {
    const { api, auth, el } = mp;

    const state = {
      search: { q: "", model: "", cursor: null, seq: 0 },
      products: new Map(), // code -> product, for names in messages
      cart: null,
      socket: null,
      connected: false,
      connecting: false,
      retryMs: RETRY_MIN_MS,
      retryTimer: null,
      requests: new Map(), // requestId -> {action, productCode, quantity, status, ...}
      outbox: [], // messages waiting for the socket
      ordersCursor: null,
      checkingOut: false,
      checkoutKey: null, // kept only while a checkout's outcome is unknown
    };

    const loggedIn = () => auth.isLoggedIn();
    const nameOf = (code) => state.products.get(code)?.name
      || state.cart?.lines?.find((l) => l.productCode === code)?.name
      || code;

    // ------------------------------------------------------------- catalog

    function modelsLoaded(models) {
      const select = byId("shop-model");
      const wanted = state.search.model;
      select.replaceChildren(el("option", { value: "" }, "All models"),
        ...models.map((m) => el("option", { value: m }, m)));
      select.value = models.includes(wanted) ? wanted : "";
    }

    function productCard(p) {
      const open = el("button", { type: "button", class: "link product-link", id: `view-${p.code}` }, p.name);
      open.addEventListener("click", () => showProduct(p.code));
      const add = el("button", { type: "button", id: `add-${p.code}`, class: "secondary", "aria-label": `Add ${p.name} to cart` }, "Add to cart");
      add.addEventListener("click", () => addToCart(p.code, 1));
      const models = p.compatibleModels || [];
      const fits = models.length > 3 ? `${models.slice(0, 3).join(", ")} +${models.length - 3} more` : models.join(", ");
      return el("li", { class: "card product-card", id: `product-${p.code}` },
        el("h3", {}, open),
        el("p", { class: "product-meta" }, el("span", { class: "code" }, p.code), " · ", p.category || ""),
        models.length ? el("p", { class: "product-fits" }, `Fits ${fits}`) : null,
        el("div", { class: "product-buy" }, el("span", { class: "price" }, fmt(p.price)), add),
      );
    }

    async function search(reset) {
      const { q, model } = state.search;
      const seq = ++state.search.seq;
      const results = byId("shop-results");
      const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (q) params.set("q", q);
      if (model) params.set("model", model);
      if (!reset && state.search.cursor) params.set("cursor", state.search.cursor);
      results.setAttribute("aria-busy", "true");
      mp.clearMessage("shop-message");
      try {
        const page = await api(`/api/shop/products?${params}`, { auth: false });
        if (seq !== state.search.seq) return; // a newer search has started
        const items = Array.isArray(page.items) ? page.items : [];
        items.forEach((p) => state.products.set(p.code, p));
        const cards = items.map(productCard);
        if (reset) results.replaceChildren(...cards);
        else results.append(...cards);
        state.search.cursor = page.nextCursor || null;
        byId("shop-more").hidden = !state.search.cursor;
        const n = results.children.length;
        const what = [q && `matching “${q}”`, model && `for ${model}`].filter(Boolean).join(" ");
        byId("shop-summary").textContent = n === 0
          ? `No parts found${what ? ` ${what}` : ""}.`
          : `${n}${state.search.cursor ? "+" : ""} part${n === 1 ? "" : "s"}${what ? ` ${what}` : ""}.`;
      } catch (err) {
        if (seq === state.search.seq) mp.showProblem("shop-message", err);
      } finally {
        if (seq === state.search.seq) results.removeAttribute("aria-busy");
      }
    }

    function startSearch() {
      state.search.q = byId("shop-search").value.trim();
      state.search.model = byId("shop-model").value;
      state.search.cursor = null;
      const params = new URLSearchParams();
      if (state.search.q) params.set("q", state.search.q);
      if (state.search.model) params.set("model", state.search.model);
      const query = params.toString();
      window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
      byId("shop-login-link").href = `/login.html?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;
      return search(true);
    }

    function availabilityText(available) {
      if (available === null || available === undefined) return "Availability unknown right now";
      if (available <= 0) return "Out of stock";
      return `${available} in stock`;
    }

    async function showProduct(code) {
      let p;
      try {
        p = await api(`/api/shop/products/${encodeURIComponent(code)}`, { auth: false });
        state.products.set(p.code, p);
      } catch (err) {
        // Availability comes from inventory; without it the part is still worth showing.
        const known = state.products.get(code);
        if (!known || err.status === 404) { mp.showProblem("shop-message", err); return; }
        p = { ...known, available: null };
      }
      renderProduct(p);
    }

    function renderProduct(p) {
      const box = byId("product");
      box.dataset.code = p.code;
      byId("product-name").textContent = p.name;
      byId("product-description").textContent = p.description || "";
      byId("product-code").textContent = p.code;
      byId("product-category").textContent = p.category || "–";
      byId("product-price").textContent = fmt(p.price);
      byId("product-models").textContent = (p.compatibleModels || []).join(", ") || "All models";
      byId("product-available").textContent = availabilityText(p.available);
      byId("product-qty").value = "1";
      box.hidden = false;
      box.scrollIntoView({ block: "nearest" });
      byId("product-name").setAttribute("tabindex", "-1");
      byId("product-name").focus({ preventScroll: true });
    }

    // ---------------------------------------------------------- live cart

    function setLive(stateName, text) {
      const box = byId("live-status");
      box.dataset.state = stateName;
      box.className = `live-status is-${stateName}`;
      box.replaceChildren(el("p", {}, text));
    }

    function setConnection(stateName, text) {
      const p = byId("live-connection");
      p.dataset.state = stateName;
      p.textContent = text;
    }

    function describe(req) {
      const name = nameOf(req.productCode);
      switch (req.action) {
        case "add": return `${req.quantity} × ${name}`;
        case "set": return `${name} to ${req.quantity}`;
        case "remove": return name;
        default: return "your cart";
      }
    }

    const VERBS = {
      add: ["Adding", "Added", "to your cart."],
      set: ["Changing", "Changed", "."],
      remove: ["Removing", "Removed", "from your cart."],
      check: ["Checking", "Checked", "."],
    };

    function outcomeText(req) {
      const [doing, done, tail] = VERBS[req.action] || VERBS.check;
      const what = describe(req);
      if (req.status === "pending") return `${doing} ${what}… waiting for confirmation.`;
      if (req.status === "confirmed") return tail === "." ? `${done} ${what}.` : `${done} ${what} ${tail}`;
      if (req.reason === "out_of_stock") {
        // `available` counts the units that could still be held on top of the cart's own.
        const left = Number(req.available);
        const name = nameOf(req.productCode);
        const not = `not ${done.toLowerCase()}`;
        if (req.inCart) {
          return Number.isFinite(left) && left > 0 ? `Only ${left} more of ${name} available: ${not}.` : `No more of ${name} available: ${not}.`;
        }
        return Number.isFinite(left) && left > 0 ? `Only ${left} left of ${name}: ${not}.` : `${name} is out of stock: ${not}.`;
      }
      const why = REASONS[req.reason] || req.detail || req.reason || "refused";
      return `Not ${done.toLowerCase()}: ${why}.`;
    }

    function logRequest(req) {
      const log = byId("live-log");
      let item = byId(`req-${req.requestId}`);
      if (!item) {
        item = el("li", { id: `req-${req.requestId}` });
        log.prepend(item);
        byId("live-log-title").hidden = false;
        while (log.children.length > LOG_SIZE) log.lastElementChild.remove();
      }
      item.className = `is-${req.status}`;
      item.dataset.state = req.status;
      item.replaceChildren(el("span", { class: "req-state" }, REQUEST_STATES[req.status] || req.status), " ", outcomeText(req));
    }

    function sendRaw(message) {
      if (state.socket && state.connected) {
        state.socket.send(JSON.stringify(message));
      } else {
        state.outbox.push(message);
        connect();
      }
    }

    function request(action, productCode, quantity) {
      if (!loggedIn()) { askToLogIn(); return; }
      const req = { requestId: crypto.randomUUID(), action, status: "pending", acknowledged: false, retries: 0 };
      if (productCode) {
        req.productCode = productCode;
        req.inCart = Boolean(state.cart?.lines?.some((l) => l.productCode === productCode));
      }
      if (quantity !== undefined) req.quantity = quantity;
      state.requests.set(req.requestId, req);
      const message = { type: action, requestId: req.requestId };
      if (productCode) message.productCode = productCode;
      if (quantity !== undefined) message.quantity = quantity;
      req.message = message;
      setLive("pending", outcomeText(req));
      logRequest(req);
      sendRaw(message);
      return req;
    }

    function addToCart(code, quantity) {
      if (!loggedIn()) { askToLogIn(); return; }
      request("add", code, quantity);
    }

    function askToLogIn() {
      setLive("login", "Log in to add parts to your cart.");
      byId("shop-login-link").focus();
    }

    function settle(req, status, reason, available, detail) {
      req.status = status;
      req.reason = reason;
      req.available = available;
      req.detail = detail;
      if (status !== "pending") {
        delete req.message;
        clearTimeout(req.retryTimer);
        if (req.productCode) refreshProduct(req.productCode);
      }
      // The live region speaks about the newest request only.
      const newest = [...state.requests.values()].pop();
      if (newest === req) setLive(req.status, outcomeText(req));
      logRequest(req);
    }

    function onReply(msg) {
      const req = state.requests.get(msg.requestId);
      if (msg.cart) renderCart(msg.cart);
      if (!req || req.status !== "pending") return; // another tab's, or already settled
      if (msg.status === "pending") {
        // The first "pending" is the receipt. Another one means the request is still being
        // decided elsewhere (e.g. it was sent again after a reconnect): ask for its stored
        // outcome again a little later.
        if (req.acknowledged && req.message) {
          clearTimeout(req.retryTimer);
          const delay = Math.min(RETRY_MIN_MS * 2 ** req.retries, RETRY_MAX_MS);
          req.retries += 1;
          req.retryTimer = setTimeout(() => {
            if (!req.message) return;
            req.acknowledged = false;
            sendRaw(req.message);
          }, delay);
        }
        req.acknowledged = true;
        return;
      }
      settle(req, msg.status, msg.reason, msg.available, msg.detail);
    }

    function onMessage(event) {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (!msg || typeof msg !== "object") return;
      if (msg.type === "cart" && msg.cart) renderCart(msg.cart);
      else if (msg.type === "reply") onReply(msg);
      else if (msg.type === "error") {
        const req = msg.requestId && state.requests.get(msg.requestId);
        if (req && req.status === "pending") settle(req, "rejected", msg.code, undefined, msg.detail);
        else setLive("rejected", `The cart could not take that request: ${msg.detail || msg.code || "error"}.`);
      }
    }

    async function connect() {
      if (state.socket || state.connecting || !loggedIn()) return;
      clearTimeout(state.retryTimer);
      state.retryTimer = null;
      setConnection("connecting", "Connecting…");
      // api() refreshes an expiring access token first; the cart also fills the page
      // before the socket's own first message arrives.
      state.connecting = true;
      try {
        renderCart(await api("/api/cart"));
      } catch (err) {
        if (err.status === 401) { showSignedOut(); return; }
        scheduleReconnect();
        return;
      } finally {
        state.connecting = false;
      }
      if (state.socket || !loggedIn()) return;
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${scheme}//${window.location.host}/api/cart/ws?access_token=${encodeURIComponent(auth.accessToken || "")}`;
      let socket;
      try { socket = new WebSocket(url); } catch { scheduleReconnect(); return; }
      state.socket = socket;
      socket.addEventListener("open", () => {
        if (state.socket !== socket) return;
        state.connected = true;
        state.retryMs = RETRY_MIN_MS;
        setConnection("connected", "Live updates on.");
        // Requests still without an outcome go again: a repeated requestId has no second effect.
        const queued = new Set(state.outbox);
        for (const req of state.requests.values()) {
          if (req.message && !queued.has(req.message)) {
            req.acknowledged = false;
            state.outbox.push(req.message);
          }
        }
        const outbox = state.outbox;
        state.outbox = [];
        outbox.forEach((m) => socket.send(JSON.stringify(m)));
      });
      socket.addEventListener("message", onMessage);
      socket.addEventListener("close", () => {
        if (state.socket !== socket) return;
        state.socket = null;
        state.connected = false;
        if (loggedIn()) scheduleReconnect();
      });
    }

    function scheduleReconnect() {
      if (state.retryTimer || !loggedIn()) return;
      const delay = state.retryMs;
      state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
      setConnection("offline", `Live updates paused; reconnecting in ${Math.round(delay / 1000)} s…`);
      state.retryTimer = setTimeout(() => { state.retryTimer = null; connect(); }, delay);
    }

    function disconnect() {
      clearTimeout(state.retryTimer);
      state.retryTimer = null;
      const socket = state.socket;
      state.socket = null;
      state.connected = false;
      if (socket) socket.close();
    }

    // --------------------------------------------------------------- cart

    function holdText(line) {
      if (!line.held) return "Hold expired";
      return line.holdExpiresAt ? `Held until ${time(line.holdExpiresAt)}` : "Held";
    }

    function cartRow(line) {
      const code = line.productCode;
      const qty = el("input", {
        id: `qty-${code}`, type: "number", min: "1", max: "100", step: "1", inputmode: "numeric",
        value: String(line.quantity), class: "qty", "aria-label": `Quantity of ${line.name || code}`,
      });
      qty.addEventListener("change", () => {
        const n = Number(qty.value);
        if (qty.value.trim() === "" || !Number.isInteger(n) || n < 0 || n > 100) { qty.value = String(line.quantity); return; }
        if (n === line.quantity) return;
        if (n === 0) request("remove", code);
        else request("set", code, n);
      });
      const remove = el("button", { type: "button", class: "link", id: `remove-${code}`, "aria-label": `Remove ${line.name || code}` }, "Remove");
      remove.addEventListener("click", () => request("remove", code));
      return el("tr", { id: `line-${code}`, class: line.held ? null : "is-expired" },
        el("td", {},
          el("div", { class: "line-name" }, line.name || code),
          el("div", { class: "hint" }, `${code} · ${fmt(line.unitPrice)} each`, el("span", { class: "line-hold" }, holdText(line)))),
        el("td", {}, el("div", { class: "line-actions" }, qty, remove)),
        el("td", { class: "num" }, fmt(line.lineTotal)),
      );
    }

    function renderCart(cart) {
      if (!cart || !Array.isArray(cart.lines)) return;
      // A quantity being typed survives a re-render unless the server changed that line.
      const active = document.activeElement;
      const typing = active && active.id && active.id.startsWith("qty-") ? { id: active.id, value: active.value } : null;
      const before = typing && state.cart?.lines?.find((l) => `qty-${l.productCode}` === typing.id);
      state.cart = cart;
      byId("cart-lines").replaceChildren(...cart.lines.map(cartRow));
      const input = typing && byId(typing.id);
      if (input) {
        const after = cart.lines.find((l) => `qty-${l.productCode}` === typing.id);
        if (before && after && before.quantity === after.quantity) input.value = typing.value;
        input.focus();
      }
      byId("cart-empty").hidden = cart.lines.length > 0;
      byId("cart-total").textContent = fmt(cart.total);
      byId("checkout").disabled = state.checkingOut || cart.lines.length === 0 || cart.checkoutInProgress;

      const status = [];
      const pending = Array.isArray(cart.pendingRequests) ? cart.pendingRequests.length : 0;
      if (cart.checkoutInProgress) status.push("Checkout in progress…");
      if (pending) status.push(`${pending} change${pending === 1 ? "" : "s"} waiting for confirmation.`);
      const held = cart.lines.filter((l) => l.held && l.holdExpiresAt).map((l) => l.holdExpiresAt).sort();
      if (held.length) status.push(`Your parts are held until ${time(held[0])}.`);
      const expired = cart.lines.filter((l) => !l.held).length;
      if (expired) status.push(`${expired} hold${expired === 1 ? " has" : "s have"} expired: re-check to hold the parts again.`);
      byId("cart-status").textContent = status.join(" ");
      byId("cart-check").hidden = expired === 0;
    }

    async function refreshProduct(code) {
      const box = byId("product");
      if (box.hidden || box.dataset.code !== code) return;
      try {
        const p = await api(`/api/shop/products/${encodeURIComponent(code)}`, { auth: false });
        if (box.dataset.code === code) byId("product-available").textContent = availabilityText(p.available);
      } catch { /* the last known availability stays */ }
    }

    // ----------------------------------------------------------- checkout

    function checkoutProblem(err) {
      const problem = err.problem || {};
      const box = byId("checkout-message");
      if (problem.code === "insufficient_funds") {
        box.className = "message error";
        box.replaceChildren(
          el("p", {}, "There is not enough money in your wallet for this order."),
          el("p", {}, el("a", { id: "checkout-wallet-link", href: "/wallet.html" }, "Top up your wallet"), ", then check out again."),
        );
        return;
      }
      if (problem.code === "out_of_stock") {
        const left = Number(problem.available);
        const name = nameOf(problem.productCode);
        mp.showMessage(box, Number.isFinite(left) && left > 0
          ? `Only ${left} left of ${name}. Change the quantity and check out again.`
          : `${name} is out of stock. Remove it and check out again.`, "error");
        return;
      }
      mp.showProblem(box, err);
    }

    async function checkout() {
      if (!loggedIn()) { askToLogIn(); return; }
      const button = byId("checkout");
      state.checkingOut = true;
      button.disabled = true;
      mp.clearMessage("checkout-message");
      const key = state.checkoutKey || crypto.randomUUID();
      state.checkoutKey = key;
      try {
        const order = await api("/api/cart/checkout", {
          method: "POST",
          body: {},
          headers: { "Idempotency-Key": key },
        });
        state.checkoutKey = null;
        const box = byId("checkout-message");
        if (order.status === "failed") {
          mp.showMessage(box, `Order ${order.id} failed${order.failure ? `: ${order.failure}` : "."}`, "error");
        } else {
          mp.showMessage(box, order.status === "placed"
            ? `Order placed: ${fmt(order.total)} paid from your wallet.`
            : `Order received (${order.status}): ${fmt(order.total)}.`, "success");
        }
        loadOrders(true, order.status === "pending" ? PENDING_ORDER_POLLS : 0);
      } catch (err) {
        // A refusal is final: the next click is a new checkout. Otherwise it may have gone through.
        const code = err.problem && err.problem.code;
        const settled = err.status >= 400 && err.status < 500 && err.status !== 429 && code !== "idempotency_in_progress";
        if (settled) state.checkoutKey = null;
        if (err.status === 401) { showSignedOut(); return; }
        checkoutProblem(err);
        // A refused checkout is listed as a failed order; an open one as pending.
        loadOrders(true, settled ? 0 : PENDING_ORDER_POLLS);
      } finally {
        state.checkingOut = false;
        try { renderCart(await api("/api/cart")); } catch { /* the socket will bring it */ }
        if (state.cart) button.disabled = state.cart.lines.length === 0 || state.cart.checkoutInProgress;
        else button.disabled = false;
      }
    }

    // ------------------------------------------------------------- orders

    function orderItem(o) {
      const lines = (o.lines || []).map((l) => `${l.quantity} × ${l.name || l.productCode}`).join(", ");
      const created = new Date(o.createdAt);
      return el("li", { class: `order is-${o.status}`, id: `order-${o.id}` },
        el("div", { class: "order-head" },
          el("time", { datetime: o.createdAt }, Number.isNaN(created.getTime()) ? o.createdAt : created.toLocaleString()),
          el("span", { class: `order-status status-${o.status}` }, ORDER_STATES[o.status] || o.status)),
        el("div", {}, lines),
        el("div", { class: "order-foot" },
          el("span", { class: "price" }, fmt(o.total)),
          o.chargeId && o.status === "placed"
            ? el("a", { href: `/invoice.html?id=${encodeURIComponent(o.chargeId)}`, class: "invoice-link" }, "Invoice")
            : null),
        o.failure ? el("div", { class: "hint" }, ORDER_FAILURES[o.failure] || o.failure) : null,
      );
    }

    async function loadOrders(reset, pollsLeft = 0) {
      const list = byId("orders");
      const params = new URLSearchParams({ limit: String(ORDERS_PAGE) });
      if (!reset && state.ordersCursor) params.set("cursor", state.ordersCursor);
      try {
        const page = await api(`/api/shop/orders?${params}`);
        const items = Array.isArray(page.items) ? page.items : [];
        if (reset) list.replaceChildren(...items.map(orderItem));
        else list.append(...items.map(orderItem));
        state.ordersCursor = page.nextCursor || null;
        byId("orders-more").hidden = !state.ordersCursor;
        byId("orders-empty").hidden = list.children.length > 0;
        // A checkout that is still settling: look again a few times.
        if (reset && pollsLeft > 0 && items.some((o) => o.status === "pending")) {
          setTimeout(() => loadOrders(true, pollsLeft - 1), 2_000);
        }
      } catch (err) {
        if (err.status === 401) { showSignedOut(); return; }
        mp.showProblem("checkout-message", err);
      }
    }

    // ------------------------------------------------------ login changes

    function showSignedIn() {
      byId("shop-login").hidden = true;
      byId("cart").hidden = false;
      byId("orders-section").hidden = false;
      connect();
      loadOrders(true);
    }

    function showSignedOut() {
      disconnect();
      state.cart = null;
      state.requests.forEach((req) => clearTimeout(req.retryTimer));
      state.requests.clear();
      state.outbox = [];
      byId("cart").hidden = true;
      byId("orders-section").hidden = true;
      byId("shop-login").hidden = false;
      byId("cart-lines").replaceChildren();
      byId("orders").replaceChildren();
      byId("live-log").replaceChildren();
      byId("live-log-title").hidden = true;
    }

    // --------------------------------------------------------------- boot

    const params = new URLSearchParams(window.location.search);
    state.search.q = params.get("q") || "";
    state.search.model = params.get("model") || "";
    byId("shop-search").value = state.search.q;

    let debounce = null;
    byId("shop-search").addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(startSearch, SEARCH_DEBOUNCE_MS);
    });
    byId("shop-search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(debounce);
      startSearch();
    });
    byId("shop-model").addEventListener("change", () => { clearTimeout(debounce); startSearch(); });
    byId("shop-more").addEventListener("click", () => search(false));
    byId("product-close").addEventListener("click", () => { byId("product").hidden = true; });
    byId("product-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const code = byId("product").dataset.code;
      const n = Number(byId("product-qty").value);
      if (!code) return;
      if (!Number.isInteger(n) || n < 1 || n > 100) {
        setLive("rejected", "Choose a quantity between 1 and 100.");
        return;
      }
      addToCart(code, n);
    });
    byId("checkout").addEventListener("click", checkout);
    byId("cart-check").addEventListener("click", () => request("check"));
    byId("orders-more").addEventListener("click", () => loadOrders(false));
    byId("shop-login-link").href = `/login.html?next=${encodeURIComponent(window.location.pathname + window.location.search)}`;

    // Another tab logging in or out.
    window.addEventListener("storage", () => {
      if (loggedIn() && byId("cart").hidden) showSignedIn();
      else if (!loggedIn() && !byId("cart").hidden) showSignedOut();
    });
    // Holds run out while the page sits open: show it without waiting for the server.
    setInterval(() => {
      if (!state.cart) return;
      const now = Date.now();
      if (state.cart.lines.some((l) => l.held && l.holdExpiresAt && Date.parse(l.holdExpiresAt) <= now)) {
        renderCart({ ...state.cart, lines: state.cart.lines.map((l) => (l.held && Date.parse(l.holdExpiresAt) <= now ? { ...l, held: false } : l)) });
      }
    }, 15_000);

    api("/api/shop/models", { auth: false }).then((models) => modelsLoaded(Array.isArray(models) ? models : []))
      .catch((err) => mp.showProblem("shop-message", err));
    search(true);
    if (loggedIn()) showSignedIn();
    else showSignedOut();
  }

  function ready(fn) {
    if (window.motorpool) fn(window.motorpool);
    else document.addEventListener("DOMContentLoaded", () => fn(window.motorpool));
  }

  ready((mp) => {
    if (document.body.dataset.page === "shop") shop(mp);
  });
})();
