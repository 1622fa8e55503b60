/*
 * The wallet and invoice pages. Money-moving requests carry an Idempotency-Key that is
 * kept until the request succeeds, so a double click or a retry after a network error
 * never tops up twice.
 */
(() => {
  "use strict";

  function ready(fn) {
    if (window.motorpool) fn(window.motorpool);
    else document.addEventListener("DOMContentLoaded", () => fn(window.motorpool));
  }

  const fmt = (m) => (m ? `${m.amount} ${m.currency}` : "–");
  const KINDS = { top_up: "Top-up", charge: "Payment", authorization: "Hold", capture: "Capture", void: "Hold released", refund: "Refund" };

  function wallet(mp) {
    if (!mp.requireLogin()) return;
    let cursor = null;
    let topUpKey = null;

    async function loadBalance() {
      const w = await mp.api("/api/payments/wallet");
      const eur = (w.balances || []).find((b) => b.currency === "EUR");
      document.getElementById("wallet-balance").textContent = eur ? fmt(eur.available) : "0.00 EUR";
      document.getElementById("wallet-held").textContent = eur ? fmt(eur.held) : "0.00 EUR";
    }

    function row(t) {
      const tr = mp.el("tr");
      const date = new Date(t.createdAt);
      tr.append(
        mp.el("td", {}, date.toLocaleString()),
        mp.el("td", {}, `${KINDS[t.kind] || t.kind}: ${t.description}`),
        mp.el("td", { class: "num" }, fmt(t.walletChange)),
      );
      const cell = mp.el("td");
      if (t.chargeId && (t.kind === "charge" || t.kind === "capture")) {
        cell.append(mp.el("a", { href: `/invoice.html?id=${encodeURIComponent(t.chargeId)}`, class: "invoice-link" }, "Invoice"));
      }
      tr.append(cell);
      return tr;
    }

    async function loadTransactions(reset) {
      const body = document.getElementById("transactions");
      if (reset) { body.replaceChildren(); cursor = null; }
      const q = cursor ? `?limit=20&cursor=${encodeURIComponent(cursor)}` : "?limit=20";
      const page = await mp.api(`/api/payments/transactions${q}`);
      body.append(...page.items.map(row));
      cursor = page.nextCursor;
      document.getElementById("transactions-more").hidden = !cursor;
      document.getElementById("transactions-empty").hidden = body.children.length > 0;
    }

    document.getElementById("transactions-more").addEventListener("click", () => loadTransactions(false));
    document.getElementById("topup-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = document.getElementById("topup-submit");
      mp.clearMessage("topup-message");
      const amount = document.getElementById("topup-amount").value.trim();
      const cardNumber = document.getElementById("topup-card").value.trim();
      topUpKey = topUpKey || crypto.randomUUID();
      button.disabled = true;
      try {
        const done = await mp.api("/api/payments/wallet/top-up", {
          method: "POST",
          body: { amount: { amount, currency: "EUR" }, cardNumber },
          headers: { "Idempotency-Key": topUpKey },
        });
        topUpKey = null;
        mp.showMessage("topup-message", `Added ${fmt(done.amount)}. Available: ${fmt(done.available)}.`, "success");
        document.getElementById("topup-amount").value = "";
        await Promise.all([loadBalance(), loadTransactions(true)]);
      } catch (err) {
        // A refusal is final for this key; anything else may be retried with it.
        if (err.problem && err.problem.status && err.problem.status < 500) topUpKey = null;
        mp.showProblem("topup-message", err, { amount: "topup-amount", "amount.amount": "topup-amount", cardNumber: "topup-card" });
      } finally {
        button.disabled = false;
      }
    });

    Promise.all([loadBalance(), loadTransactions(true)]).catch((err) => mp.showProblem("topup-message", err));
  }

  function invoice(mp) {
    if (!mp.requireLogin()) return;
    const id = new URLSearchParams(window.location.search).get("id");
    document.getElementById("invoice-print").addEventListener("click", () => window.print());
    if (!id) { mp.showMessage("invoice-message", "No invoice selected.", "error"); return; }
    mp.api(`/api/payments/invoices/${encodeURIComponent(id)}`).then((inv) => {
      document.getElementById("invoice-number").textContent = inv.number;
      document.getElementById("invoice-issued").textContent = new Date(inv.issuedAt).toLocaleString();
      document.getElementById("invoice-reference").textContent = inv.reference;
      document.getElementById("invoice-status").textContent = inv.status.replace("_", " ");
      document.getElementById("invoice-customer").textContent = inv.customerName ? `${inv.customerName} <${inv.customerEmail}>` : inv.customerId;
      const lines = [...inv.lines, ...inv.refunds].map((l) =>
        mp.el("tr", {}, mp.el("td", {}, l.description), mp.el("td", { class: "num" }, fmt(l.amount))));
      document.getElementById("invoice-lines").replaceChildren(...lines);
      document.getElementById("invoice-total").textContent = fmt(inv.amountDueAfterRefunds);
    }).catch((err) => mp.showProblem("invoice-message", err));
  }

  ready((mp) => {
    const page = document.body.dataset.page;
    if (page === "wallet") wallet(mp);
    if (page === "invoice") invoice(mp);
  });
})();
