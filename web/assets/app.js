/*
 * Motorpool web shell: shared navigation, auth state, API helper and the
 * per-page behaviour for the pages in this folder.
 *
 * Everything lives in this one same-origin file (no inline <script>) so the
 * pages work under a strict Content-Security-Policy (script-src 'self').
 * Pages pick their behaviour with <body data-page="...">.
 *
 * Untrusted text (API data, user input) is only ever written with
 * textContent / createElement, never innerHTML.
 */
(() => {
  "use strict";

  // Platform areas. A new page slots in by adding its file and flipping
  // `ready` to true; nav and home cards pick it up automatically.
  const AREAS = [
    { title: "Configure", href: "/configure.html", description: "Build a new car: model, engine, colour and options, priced as you go.", ready: true },
    { title: "Factory", href: "/factory.html", description: "Your car orders: production date, estimated delivery and every step from the plant.", ready: true },
    { title: "Rentals", href: "/rentals.html", description: "Rent a car by the day or week from a nearby location.", ready: false },
    { title: "Rides", href: "/rides.html", description: "Book a ride with a driver, now or later.", ready: false },
    { title: "Garage", href: "/garage.html", description: "Your cars, service history and trusted mechanics.", ready: false },
    { title: "Shop", href: "/shop.html", description: "Genuine parts and accessories for your car.", ready: true },
  ];

  // Storage keys are deliberately plain so other pages/tools can read them.
  const KEYS = {
    access: "accessToken",
    refresh: "refreshToken",
    expiresAt: "accessExpiresAt",
    email: "userEmail", // display cache only, so the nav doesn't flicker
  };

  // Refresh slightly early so a token doesn't expire in flight.
  const EXPIRY_SKEW_MS = 30_000;

  // ---------------------------------------------------------------- storage

  function store() {
    // localStorage can throw (privacy modes, disabled storage).
    try { return window.localStorage; } catch { return null; }
  }

  function getItem(key) {
    const s = store();
    return s ? s.getItem(key) : null;
  }

  function setItem(key, value) {
    const s = store();
    if (!s) return;
    if (value === null || value === undefined) s.removeItem(key);
    else s.setItem(key, String(value));
  }

  const auth = {
    get accessToken() { return getItem(KEYS.access); },
    get refreshToken() { return getItem(KEYS.refresh); },
    get accessExpiresAt() { return Number(getItem(KEYS.expiresAt)) || 0; },
    get email() { return getItem(KEYS.email); },
    isLoggedIn() { return Boolean(getItem(KEYS.access) || getItem(KEYS.refresh)); },
    save(tokens) {
      setItem(KEYS.access, tokens.accessToken);
      // Keep the old refresh token if the server didn't rotate it.
      if (tokens.refreshToken) setItem(KEYS.refresh, tokens.refreshToken);
      const ttl = Number(tokens.expiresIn) || 0;
      setItem(KEYS.expiresAt, ttl > 0 ? Date.now() + ttl * 1000 : null);
    },
    setEmail(email) { setItem(KEYS.email, email || null); },
    clear() {
      Object.values(KEYS).forEach((k) => setItem(k, null));
      cachedMe = null;
    },
  };

  // -------------------------------------------------------------------- api

  function problemError(problem) {
    const err = new Error(problem.detail || problem.title || "Request failed");
    err.problem = problem;
    err.status = problem.status;
    return err;
  }

  async function parseBody(res) {
    if (res.status === 204 || res.status === 205) return null;
    const text = await res.text();
    if (!text) return null;
    const type = res.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try { return JSON.parse(text); } catch { /* fall through to text */ }
    }
    return text;
  }

  // Normalises any failed response into a problem+json shaped object, so
  // callers only ever deal with one format.
  async function toProblem(res) {
    const body = await parseBody(res).catch(() => null);
    const problem = body && typeof body === "object" ? { ...body } : {};
    problem.status = problem.status || res.status;
    problem.title = problem.title || res.statusText || "Request failed";
    if (!problem.detail && typeof body === "string" && body.length < 300) problem.detail = body;
    if (res.status === 429 && !problem.detail) {
      const retry = res.headers.get("Retry-After");
      problem.detail = retry ? `Too many attempts. Try again in ${retry} seconds.` : "Too many attempts. Try again later.";
    }
    return problem;
  }

  async function rawFetch(path, { method = "GET", body, token, extraHeaders } = {}) {
    const headers = { Accept: "application/json, application/problem+json", ...(extraHeaders || {}) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    try {
      return await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch {
      throw problemError({
        type: "about:blank",
        title: "Network error",
        status: 0,
        detail: "Could not reach Motorpool. Check your connection and try again.",
      });
    }
  }

  // Concurrent 401s share one refresh call; refresh tokens may be single-use.
  let refreshing = null;

  function refreshTokens() {
    if (!refreshing) {
      refreshing = (async () => {
        const refreshToken = auth.refreshToken;
        if (!refreshToken) return false;
        const res = await rawFetch("/api/auth/refresh", { method: "POST", body: { refreshToken } });
        if (!res.ok) {
          // Only a definitive rejection logs the user out; a 5xx may be transient.
          if (res.status >= 400 && res.status < 500) auth.clear();
          return false;
        }
        auth.save(await parseBody(res));
        return true;
      })().catch(() => false).finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  /**
   * api(path, { method, body, auth, headers }) -> parsed JSON (or null for 204).
   * `auth` defaults to true: send the bearer token when logged in and retry
   * once after a refresh on 401. Pass auth:false for anonymous endpoints.
   * Throws Error with `.problem` (problem+json) on failure.
   */
  async function api(path, { method = "GET", body, auth: useAuth = true, headers } = {}) {
    if (useAuth && auth.refreshToken && auth.accessExpiresAt && Date.now() > auth.accessExpiresAt - EXPIRY_SKEW_MS) {
      await refreshTokens();
    }

    let res = await rawFetch(path, { method, body, token: useAuth ? auth.accessToken : null, extraHeaders: headers });

    if (res.status === 401 && useAuth && auth.refreshToken) {
      if (await refreshTokens()) {
        res = await rawFetch(path, { method, body, token: auth.accessToken, extraHeaders: headers });
      }
    }

    if (!res.ok) throw problemError(await toProblem(res));
    return parseBody(res);
  }

  // Cached per page load so nav and page content share one /me request.
  let cachedMe = null;

  function currentUser() {
    if (!auth.isLoggedIn()) return Promise.resolve(null);
    if (!cachedMe) {
      cachedMe = api("/api/auth/me").then((me) => {
        if (me && me.email) auth.setEmail(me.email);
        return me;
      });
      cachedMe.catch(() => { cachedMe = null; });
    }
    return cachedMe;
  }

  async function login(email, password) {
    const tokens = await api("/api/auth/login", { method: "POST", body: { email, password }, auth: false });
    auth.save(tokens);
    auth.setEmail(email);
    cachedMe = null;
    return tokens;
  }

  async function logout() {
    const refreshToken = auth.refreshToken;
    if (refreshToken) {
      // Server-side revocation is best effort; the user is logged out locally regardless.
      try { await api("/api/auth/logout", { method: "POST", body: { refreshToken }, auth: false }); } catch { /* ignored */ }
    }
    auth.clear();
    window.location.assign("/");
  }

  // -------------------------------------------------------------- rendering

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function isCurrent(href) {
    const path = window.location.pathname;
    return path === href || (href === "/" && path === "/index.html");
  }

  function renderNav() {
    const header = document.getElementById("nav");
    if (!header) return;

    const links = el("ul", { class: "nav-links" });
    for (const area of AREAS) {
      const a = el("a", { href: area.href, "aria-current": isCurrent(area.href) ? "page" : null }, area.title);
      if (!area.ready) {
        a.title = "Coming soon";
        a.append(el("span", { class: "badge" }, "soon"));
      }
      links.append(el("li", {}, a));
    }

    const user = el("ul", { class: "nav-user" });
    if (auth.isLoggedIn()) {
      const email = el("a", { id: "nav-user", href: "/account.html", title: "Your account" }, auth.email || "Account");
      const logoutButton = el("button", { id: "logout-button", type: "button", class: "secondary" }, "Log out");
      logoutButton.addEventListener("click", () => {
        logoutButton.disabled = true;
        logout();
      });
      // bell.js mounts the notifications bell here.
      const walletLink = el("a", { id: "nav-wallet", href: "/wallet.html", "aria-current": isCurrent("/wallet.html") ? "page" : null }, "Wallet");
      user.append(el("li", { class: "nav-bell-slot" }), el("li", {}, walletLink), el("li", {}, email), el("li", {}, logoutButton));
      // Fill in / correct the email; a dead session falls back to logged-out nav.
      currentUser().then((me) => {
        if (me && me.email) email.textContent = me.email;
      }).catch((err) => {
        if (err.status === 401) { auth.clear(); renderNav(); }
      });
    } else {
      user.append(
        el("li", {}, el("a", { href: "/login.html", "aria-current": isCurrent("/login.html") ? "page" : null }, "Log in")),
        el("li", {}, el("a", { href: "/register.html", class: "button", "aria-current": isCurrent("/register.html") ? "page" : null }, "Register")),
      );
    }

    const nav = el("nav", { class: "nav-inner", "aria-label": "Main" },
      el("a", { class: "nav-brand", href: "/", "aria-current": isCurrent("/") ? "page" : null }, "Motorpool"),
      links,
      user,
    );
    header.replaceChildren(nav);
    document.dispatchEvent(new CustomEvent("motorpool:nav"));
  }

  /**
   * Shows a problem (or any Error) in `target`: title/detail plus the
   * per-field messages. `fields` maps API field names to input ids; those
   * inputs are flagged aria-invalid and get the message in "<id>-error".
   */
  function showProblem(target, error, fields = {}) {
    const box = typeof target === "string" ? document.getElementById(target) : target;
    clearFieldErrors(fields);
    if (!box) return;
    const problem = (error && error.problem) || { detail: (error && error.message) || String(error) };
    const fieldErrors = Array.isArray(problem.errors) ? problem.errors : [];

    const heading = problem.detail || problem.title || "Something went wrong.";
    const children = [el("p", {}, heading)];
    if (fieldErrors.length) {
      const list = el("ul");
      for (const fe of fieldErrors) {
        const label = fe.field ? `${fe.field}: ` : "";
        list.append(el("li", {}, label + (fe.message || "is invalid")));
        const inputId = fields[fe.field];
        const input = inputId && document.getElementById(inputId);
        if (input) {
          input.setAttribute("aria-invalid", "true");
          const slot = document.getElementById(`${inputId}-error`);
          if (slot && !slot.textContent) slot.textContent = fe.message || "Invalid value";
        }
      }
      children.push(list);
    }
    box.className = "message error";
    box.replaceChildren(...children);

    const firstBad = fieldErrors.map((fe) => fields[fe.field]).find(Boolean);
    if (firstBad) document.getElementById(firstBad)?.focus();
  }

  function clearFieldErrors(fields = {}) {
    for (const inputId of Object.values(fields)) {
      document.getElementById(inputId)?.removeAttribute("aria-invalid");
      const slot = document.getElementById(`${inputId}-error`);
      if (slot) slot.textContent = "";
    }
  }

  function showMessage(target, text, kind = "info") {
    const box = typeof target === "string" ? document.getElementById(target) : target;
    if (!box) return;
    box.className = `message ${kind}`;
    box.replaceChildren(...(text ? [el("p", {}, text)] : []));
  }

  function clearMessage(target) {
    const box = typeof target === "string" ? document.getElementById(target) : target;
    if (!box) return;
    box.className = "message";
    box.replaceChildren();
  }

  // Toasts for messages that aren't tied to a form.
  function notify(text, kind = "info", timeoutMs = 5000) {
    let slot = document.getElementById("notifications");
    if (!slot) {
      slot = el("div", { id: "notifications", "aria-live": "polite", role: "status" });
      document.body.append(slot);
    }
    const item = el("div", { class: `message ${kind}` }, text);
    slot.append(item);
    if (timeoutMs > 0) setTimeout(() => item.remove(), timeoutMs);
    return item;
  }

  // Only same-site paths, so ?next= can't be used as an open redirect.
  function safeNext(fallback) {
    const next = new URLSearchParams(window.location.search).get("next");
    return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : fallback;
  }

  function requireLogin() {
    if (auth.isLoggedIn()) return true;
    const next = window.location.pathname + window.location.search;
    window.location.replace(`/login.html?next=${encodeURIComponent(next)}`);
    return false;
  }

  async function withBusy(button, work) {
    if (button) button.disabled = true;
    try { return await work(); } finally { if (button) button.disabled = false; }
  }

  // ------------------------------------------------------------------ pages

  const pages = {
    home() {
      const grid = document.getElementById("areas");
      if (grid) {
        grid.replaceChildren(...AREAS.map((area) => {
          const title = el("h2", {}, area.title);
          if (!area.ready) title.append(el("span", { class: "badge" }, "Coming soon"));
          const card = el("a", { class: area.ready ? "card" : "card is-disabled", href: area.href }, title, el("p", {}, area.description));
          return el("li", {}, card);
        }));
      }
      const greeting = document.getElementById("home-greeting");
      if (greeting && auth.isLoggedIn()) {
        currentUser().then((me) => {
          if (!me) return;
          greeting.textContent = `Welcome back, ${me.fullName || me.email}.`;
          greeting.hidden = false;
        }).catch(() => { /* anonymous home page still works */ });
      }
    },

    login() {
      const form = document.getElementById("login-form");
      const button = document.getElementById("login-submit");
      if (!form) return;
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearMessage("login-message");
        const email = document.getElementById("login-email").value.trim();
        const password = document.getElementById("login-password").value;
        await withBusy(button, async () => {
          try {
            await login(email, password);
            window.location.assign(safeNext("/account.html"));
          } catch (err) {
            showProblem("login-message", err, { email: "login-email", password: "login-password" });
          }
        });
      });
    },

    register() {
      const form = document.getElementById("register-form");
      const button = document.getElementById("register-submit");
      if (!form) return;
      const fields = { email: "register-email", password: "register-password", fullName: "register-name" };
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearMessage("register-message");
        clearFieldErrors(fields);
        const email = document.getElementById("register-email").value.trim();
        const password = document.getElementById("register-password").value;
        const fullName = document.getElementById("register-name").value.trim();
        await withBusy(button, async () => {
          try {
            await api("/api/auth/register", { method: "POST", body: { email, password, fullName }, auth: false });
          } catch (err) {
            showProblem("register-message", err, fields);
            return;
          }
          try {
            await login(email, password);
            window.location.assign("/account.html");
          } catch (err) {
            // The account exists; only the automatic login failed (e.g. rate limit).
            const box = document.getElementById("register-message");
            showMessage(box, "Account created. Please log in to continue.", "success");
            box.append(el("p", {}, el("a", { href: "/login.html" }, "Go to log in")));
          }
        });
      });
    },

    account() {
      if (!requireLogin()) return;
      const logoutButton = document.getElementById("account-logout");
      logoutButton?.addEventListener("click", () => {
        logoutButton.disabled = true;
        logout();
      });
      currentUser().then((me) => {
        if (!me) { requireLogin(); return; }
        document.getElementById("me-email").textContent = me.email ?? "";
        document.getElementById("me-name").textContent = me.fullName ?? "";
        document.getElementById("me-role").textContent = me.role ?? "";
        const since = document.getElementById("me-created");
        if (since && me.createdAt) {
          const date = new Date(me.createdAt);
          since.textContent = Number.isNaN(date.getTime()) ? me.createdAt : date.toLocaleDateString();
          since.setAttribute("datetime", me.createdAt);
        }
        document.getElementById("account-details")?.removeAttribute("aria-busy");
      }).catch((err) => {
        if (err.status === 401) {
          auth.clear();
          requireLogin();
          return;
        }
        showProblem("account-message", err);
      });
    },
  };

  // ------------------------------------------------------------------ boot

  window.motorpool = Object.freeze({
    AREAS, api, auth, currentUser, login, logout, requireLogin,
    showProblem, showMessage, clearMessage, clearFieldErrors, notify, el,
    renderNav, pages,
  });

  // The notifications bell has its own script and styles (bell.js, bell.css);
  // every page gets them through this file.
  function loadBell() {
    if (document.getElementById("bell-script")) return;
    document.head.append(el("link", { rel: "stylesheet", href: "/assets/bell.css" }));
    document.head.append(el("script", { id: "bell-script", src: "/assets/bell.js" }));
  }

  function boot() {
    renderNav();
    loadBell();
    const page = document.body.dataset.page;
    if (page && pages[page]) pages[page]();
  }

  // Another tab logging in/out should be reflected in this tab's nav.
  window.addEventListener("storage", (event) => {
    if (event.key === KEYS.access || event.key === KEYS.refresh || event.key === null) {
      cachedMe = null;
      renderNav();
    }
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
