/*
 * The factory orders page: the user's car orders, newest first, and for `?order=<id>` that
 * order's status, estimated delivery, production date, price, deposit and timeline, with a
 * cancel button while production has not started. The order on show is read again every few
 * seconds while it can still change, because the production plan moves it on by the clock.
 *
 * Untrusted text (API data and messages) is only ever written with textContent.
 */
(() => {
  "use strict";

  const REFRESH_MS = 5_000;
  const CANCELLABLE = new Set(["placed", "awaiting_parts", "scheduled"]);
  const FINAL = new Set(["delivered", "cancelled", "failed"]);
  const SYMBOLS = { EUR: "€" };
  const FAILURES = {
    insufficient_funds: "There was not enough money in the wallet for the deposit.",
    payment_declined: "The payment of the deposit was declined.",
  };

  const byId = (id) => document.getElementById(id);

  /** {amount: "58250.00", currency: "EUR"} -> "58,250.00 €". */
  function money(m) {
    if (!m || typeof m.amount !== "string") return "–";
    const [units, cents = "00"] = m.amount.replace(/^-/, "").split(".");
    const grouped = units.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return `${m.amount.startsWith("-") ? "−" : ""}${grouped}.${cents.padEnd(2, "0")} ${SYMBOLS[m.currency] || m.currency || ""}`.trim();
  }

  function dateTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso || "") : d.toLocaleString();
  }

  /** A `YYYY-MM-DD` day into a <time> element, or a dash while it is not known. */
  function setDay(id, day, missing) {
    const node = byId(id);
    node.textContent = day || missing;
    if (day) node.setAttribute("datetime", day);
    else node.removeAttribute("datetime");
  }

  function factory(mp) {
    if (!mp.requireLogin()) return;
    const { api, el } = mp;
    const orderId = new URLSearchParams(window.location.search).get("order");
    let timer = null;
    let cancelling = false;

    function unauthorised(err) {
      if (err.status !== 401) return false;
      mp.auth.clear();
      mp.requireLogin();
      return true;
    }

    // -------------------------------------------------------------- list

    function orderRow(o) {
      const link = el("a", { href: `/factory.html?order=${encodeURIComponent(o.orderId)}`, id: `track-${o.orderId}` }, "Track");
      return el("tr", { "aria-current": o.orderId === orderId ? "true" : null },
        el("td", {}, dateTime(o.createdAt)),
        el("td", {}, o.model || ""),
        el("td", {}, el("span", { class: "status", "data-code": o.statusCode }, o.status || "")),
        el("td", {}, o.estimatedDelivery || "–"),
        el("td", { class: "num" }, money(o.price)),
        el("td", {}, link),
      );
    }

    async function loadOrders() {
      const orders = await api("/api/factory/orders");
      const list = Array.isArray(orders) ? orders : [];
      byId("orders").replaceChildren(...list.map(orderRow));
      byId("orders-empty").hidden = list.length > 0;
    }

    // ------------------------------------------------------------- order

    function timelineItem(t) {
      return el("li", { "data-code": t.statusCode },
        el("span", { class: "timeline-status" }, t.status || t.statusCode || ""),
        el("time", { class: "timeline-at", datetime: t.at }, dateTime(t.at)),
        t.note ? el("span", { class: "timeline-note" }, t.note) : null,
      );
    }

    function renderOrder(o) {
      byId("order-id").textContent = o.orderId;
      const status = byId("order-status");
      status.textContent = o.status || o.statusCode || "";
      status.dataset.code = o.statusCode || "";
      const planned = o.statusCode === "failed" || o.statusCode === "cancelled" ? "–" : "Not planned yet";
      setDay("order-delivery", o.estimatedDelivery, planned);
      setDay("order-production", o.productionDate, planned);
      byId("order-plant").textContent = o.plant || "–";
      byId("order-model").textContent = o.model || "–";
      byId("order-config").textContent = o.configId || "–";
      byId("order-price").textContent = money(o.price);
      byId("order-deposit").textContent = money(o.deposit);
      const failure = o.failure ? FAILURES[o.failure] || o.failure : "";
      byId("order-failure").textContent = failure;
      byId("order-failure").hidden = !failure;
      byId("order-failure-label").hidden = !failure;
      const created = byId("order-created");
      created.textContent = dateTime(o.createdAt);
      created.setAttribute("datetime", o.createdAt || "");
      byId("order-timeline").replaceChildren(...(o.timeline || []).map(timelineItem));
      byId("cancel-box").hidden = !CANCELLABLE.has(o.statusCode);
      byId("order-refreshed").textContent = FINAL.has(o.statusCode) ? "" : `Updated ${new Date().toLocaleTimeString()}; refreshes by itself.`;
      byId("order-detail").hidden = false;
      if (FINAL.has(o.statusCode)) stopRefresh();
    }

    async function loadOrder() {
      try {
        renderOrder(await api(`/api/factory/order/${encodeURIComponent(orderId)}`));
      } catch (err) {
        if (unauthorised(err)) return;
        if (err.status === 404) {
          stopRefresh();
          byId("order-detail").hidden = true;
          mp.showMessage("factory-message", "There is no such order among yours.", "error");
        } else {
          // Perhaps passing (network, a restart): the next round tries again.
          mp.showProblem("factory-message", err);
        }
        return;
      }
      mp.clearMessage("factory-message");
    }

    function stopRefresh() {
      clearInterval(timer);
      timer = null;
    }

    async function refresh() {
      if (document.hidden || cancelling) return;
      await loadOrder();
      loadOrders().catch(() => { /* the list catches up on the next round */ });
    }

    async function cancel() {
      const button = byId("cancel");
      if (cancelling) return;
      cancelling = true;
      button.disabled = true;
      mp.clearMessage("cancel-message");
      try {
        const o = await api(`/api/factory/order/${encodeURIComponent(orderId)}/cancel`, { method: "POST" });
        renderOrder(o);
        mp.showMessage("cancel-message", `Order cancelled. The deposit of ${money(o.deposit)} went back to your wallet.`, "success");
        loadOrders().catch(() => { /* shown on the next load */ });
      } catch (err) {
        if (unauthorised(err)) return;
        mp.showProblem("cancel-message", err);
        await loadOrder();
      } finally {
        cancelling = false;
        button.disabled = false;
      }
    }

    // -------------------------------------------------------------- boot

    byId("cancel").addEventListener("click", cancel);
    loadOrders().catch((err) => {
      if (!unauthorised(err)) mp.showProblem("factory-message", err);
    });
    if (orderId) {
      loadOrder();
      timer = setInterval(refresh, REFRESH_MS);
      document.addEventListener("visibilitychange", () => { if (!document.hidden && timer) refresh(); });
    }
  }

  function ready(fn) {
    if (window.motorpool) fn(window.motorpool);
    else document.addEventListener("DOMContentLoaded", () => fn(window.motorpool));
  }

  ready((mp) => {
    if (document.body.dataset.page === "factory") factory(mp);
  });
})();
