#!/usr/bin/env python3
"""Fault tests of Motorpool as a multi-process cluster (deploy/local/cluster.sh with its own
PostgreSQL, NATS and Redis), under a steady load through both gateways.

Workers (logged-in customers, one thread each) browse the parts catalog, add a part to their
cart, check out with an Idempotency-Key (retrying with the same key after a transport error,
a 5xx or 409 idempotency_in_progress; some first attempts get a deliberately short client
timeout, and some successful checkouts are sent again with their key), read their order back,
and now and then order a new car from the factory (with an Idempotency-Key, retried the same
way). An admin reader polls inventory stock through both gateways. Every request's outcome
(time, latency, status, problem code) is recorded.

Then, one after the other, with the load running: kill -9 a shop and an inventory replica (and
restart them once their discovery registration expired), stop NATS, restart PostgreSQL,
SIGSTOP a shop and a payments replica, stop Redis, SIGTERM a shop replica (no request may fail)
and restart it. After each fault, and at the end with the load stopped: no acknowledged
order lost, no duplicate charge, no oversell and stock conserved, every outbox row published,
every process ready again within a bound; and the error rate and latency of the fault window.

Standard library only. Loopback only. Bounded: every wait has a limit; the whole run takes
about three minutes. The cluster is always stopped on exit (including its PostgreSQL).
Exit status 1 when an invariant fails. See bench/faults.sh for the settings.
"""

import atexit
import datetime
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLUSTER_SH = os.path.join(ROOT, "deploy", "local", "cluster.sh")


def env(name, default):
    v = os.environ.get(name)
    return type(default)(v) if v not in (None, "") else default


BIN = env("BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "motorpool"))
STATE_DIR = env("STATE_DIR", "/tmp/motorpool-faults")
NAMESPACE = env("NAMESPACE", "motorpool_faults")
IP_BASE = env("IP_BASE", 102)
WORKERS = env("WORKERS", 8)
THINK_MS = env("THINK_MS", 40)
HOT_SKUS = env("HOT_SKUS", 6)
HOT_QTY = env("HOT_QTY", 120)
COLD_SKUS = env("COLD_SKUS", 6)
COLD_QTY = env("COLD_QTY", 100000)
FACTORY_EVERY = env("FACTORY_EVERY", 8)
PROBE_SHARE = env("PROBE_SHARE", 0.08)
REPLAY_SHARE = env("REPLAY_SHARE", 0.1)
CHECKOUT_RETRY_SECS = env("CHECKOUT_RETRY_SECS", 40.0)
FACTORY_RETRY_SECS = env("FACTORY_RETRY_SECS", 45.0)
CLIENT_TIMEOUT = env("CLIENT_TIMEOUT", 20.0)
WARMUP = env("WARMUP", 5.0)
PRE = env("PRE", 3.0)
POST = env("POST", 4.0)
DOWN_SECS = env("DOWN_SECS", 5.0)
PAUSE_SECS = env("PAUSE_SECS", 8.0)
TTL_SECS = env("TTL_SECS", 10)
UPSTREAM_TIMEOUT_MS = env("UPSTREAM_TIMEOUT_MS", 3000)
READY_BOUND = env("READY_BOUND", 30.0)
OUTBOX_BOUND = env("OUTBOX_BOUND", 30.0)
SETTLE_BOUND = env("SETTLE_BOUND", 60.0)
EJECT_BOUND = env("EJECT_BOUND", 2.0)
FAULTS = env(
    "FAULTS", "kill9-shop,kill9-inventory,nats-stop,pg-restart,sigstop-shop,sigstop-payments,redis-stop,sigterm-shop,sigterm-inventory"
).split(",")
STAMP = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
OUT = env("OUT", os.path.join(ROOT, "bench", "results", f"faults-{STAMP}"))
REPORT = env("REPORT", "")
KEEP_CLUSTER = env("KEEP_CLUSTER", 0)
PG_PORT = env("PRIVATE_PG_PORT", 25432)
NATS_PORT = env("PRIVATE_NATS_PORT", 24222)
REDIS_PORT = env("PRIVATE_REDIS_PORT", 26379)
PG_URL = f"postgres://postgres@127.0.0.1:{PG_PORT}"
ADMIN = ("admin@motorpool.local", "motorpool-admin")
DEMO = ("demo@motorpool.local", "motorpool-demo")
SERVICES_WITH_DB = ["identity", "payments", "inventory", "shop", "configurator", "factory", "notifications"]
CAR = {"engine": "V6", "color": "Red", "interior": "Leather", "features": ["Sunroof", "GPS"]}
TOP_UP_MINOR = 100_000_000  # 1,000,000.00 EUR

T0 = time.time()
LOADAVG = os.getloadavg()


def say(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The cluster (deploy/local/cluster.sh) and its private servers


CLUSTER_ENV = dict(
    os.environ,
    BIN=BIN,
    STATE_DIR=STATE_DIR,
    NAMESPACE=NAMESPACE,
    PRIVATE_INFRA="1",
    IP_BASE=str(IP_BASE),
    TTL_SECS=str(TTL_SECS),
    PRIVATE_PG_PORT=str(PG_PORT),
    PRIVATE_NATS_PORT=str(NATS_PORT),
    PRIVATE_REDIS_PORT=str(REDIS_PORT),
    MOTORPOOL_GATEWAY__UPSTREAM_TIMEOUT_MS=str(UPSTREAM_TIMEOUT_MS),
)


def cluster(*args, timeout=180, check=True):
    r = subprocess.run([CLUSTER_SH, *args], env=CLUSTER_ENV, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"cluster.sh {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


PLAN = {}  # name -> (service, addr)
CLUSTER_UP = False


def teardown():
    global CLUSTER_UP
    if CLUSTER_UP and not KEEP_CLUSTER:
        say("stopping the cluster")
        try:
            cluster("down", timeout=120, check=False)
        except Exception as e:  # noqa: BLE001 - last resort on exit
            say("cluster down failed:", e)
        CLUSTER_UP = False


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def sql(service, query):
    """Rows (lists of strings) of one query on a service's database."""
    r = subprocess.run(
        ["psql", f"{PG_URL}/{NAMESPACE}_{service}", "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode != 0:
        raise RuntimeError(f"psql {service}: {r.stderr.strip()}")
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def redis(*args):
    """One Redis command on the private server; the decoded reply."""
    with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1) as s:
        payload = f"*{len(args)}\r\n" + "".join(f"${len(str(a).encode())}\r\n{a}\r\n" for a in args)
        s.sendall(payload.encode())
        f = s.makefile("rb")

        def read():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:]
            if kind in (b"+", b":"):
                return rest.decode()
            if kind == b"-":
                raise RuntimeError(rest.decode())
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise RuntimeError(f"redis reply {line!r}")

        return read()


def live_registrations(service):
    """Addresses registered for `service` whose registration has not expired."""
    now_ms = int(time.time() * 1000)
    members = redis("ZRANGEBYSCORE", f"{NAMESPACE}:registry:{service}", now_ms, "+inf") or []
    return {m.split("|", 1)[1] for m in members if "|" in m}


def ready(addr, timeout=1.0):
    host, port = addr.rsplit(":", 1)
    try:
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
        c.request("GET", "/ready")
        status = c.getresponse().status
        c.close()
        return status == 200
    except (OSError, http.client.HTTPException):
        return False


def wait_all_ready(bound):
    """Seconds until every process of the plan answers /ready 200, or None past `bound`."""
    start = time.time()
    pending = dict(PLAN)
    while pending and time.time() - start < bound:
        for name, (_, addr) in list(pending.items()):
            if ready(addr):
                del pending[name]
        if pending:
            time.sleep(0.1)
    return None if pending else time.time() - start


def pid_alive(name):
    try:
        pid = int(cluster("pid", name, check=False).strip())
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"  # a zombie is dead
    except (ValueError, OSError, IndexError):
        return False


# ---------------------------------------------------------------------------------------------
# HTTP through the gateways, every request recorded


class Recorder:
    def __init__(self):
        self.rows = []  # (t_start, latency_s, kind, status, code, gateway, worker, request id)
        self.lock = threading.Lock()
        self.violations = []  # (when, what)

    def add(self, row):
        self.rows.append(row)  # list.append is atomic

    def violation(self, what):
        with self.lock:
            self.violations.append((time.time(), what))
        say("VIOLATION:", what)


REC = Recorder()


class Http:
    """One keep-alive connection to one gateway."""

    def __init__(self, addr):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=None):
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        one_shot = timeout is not None
        try:
            if timeout == 0:
                # Send the request, then hang up without reading the answer.
                conn = http.client.HTTPConnection(self.host, self.port, timeout=CLIENT_TIMEOUT)
                conn.request(method, path, body=data, headers=hdrs)
                conn.close()
                return 0, {"error": "hung up"}, ""
            if one_shot:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            else:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=CLIENT_TIMEOUT)
                conn = self.conn
            # http.client sends Content-Length: 0 for a POST, PUT or PATCH without a body.
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            raw = r.read()
            if one_shot or r.getheader("connection", "").lower() == "close":
                conn.close()
                if not one_shot:
                    self.conn = None
            try:
                obj = json.loads(raw) if raw else None
            except ValueError:
                obj = None
            return r.status, obj, r.getheader("x-request-id") or ""
        except (OSError, http.client.HTTPException) as e:
            if one_shot:
                conn.close()
            elif self.conn is not None:
                self.conn.close()
                self.conn = None
            return 0, {"error": repr(e)}, ""


class Client:
    """A user's view of the cluster: both gateways, a token, every request recorded."""

    def __init__(self, gateways, name, token=None):
        self.gws = [Http(a) for a in gateways]
        self.name = name
        self.token = token

    def call(self, kind, method, path, body=None, key=None, timeout=None, gw=None, record=True):
        i = random.randrange(len(self.gws)) if gw is None else gw
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if key:
            headers["Idempotency-Key"] = key
        t = time.time()
        status, obj, rid = self.gws[i].request(method, path, body, headers, timeout)
        dt = time.time() - t
        code = obj.get("code", "") if isinstance(obj, dict) and status >= 400 else ""
        if status == 0:
            code = "transport"
        if record:
            REC.add((t, dt, kind, status, code, i, self.name, rid))
        return status, code, obj, rid


def must(status_obj, what, ok=(200, 201)):
    status, code, obj, _ = status_obj
    if status not in ok:
        raise RuntimeError(f"{what}: {status} {code} {obj}")
    return obj


# ---------------------------------------------------------------------------------------------
# The load


class Ledger:
    """What the clients were told (shared by the workers)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.checkouts = {}  # key -> dict(user, outcome, order_id, at, statuses)
        self.factory = {}  # key -> dict(user, outcome, order_id, at, statuses)
        self.topped_up = {}  # user_id -> minor units


LEDGER = Ledger()


def attempt(status, code, rid):
    """One attempt of a keyed request, as recorded: status[:code] at HH:MM:SS.mmm #request-id."""
    at = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    return f"{status}{':' + code if code else ''} at {at}" + (f" #{rid}" if rid else "")


class Worker(threading.Thread):
    def __init__(self, n, user, gateways, hot, cold, words, stop):
        super().__init__(daemon=True, name=f"worker-{n}")
        self.n, self.user, self.hot, self.cold, self.words, self.stop = n, user, hot, cold, words, stop
        self.client = Client(gateways, f"w{n}", user["token"])
        self.cycle = 0
        self.rng = random.Random(n)
        self.error = None

    def think(self):
        time.sleep(THINK_MS / 1000 * (0.5 + self.rng.random()))

    def run(self):
        try:
            while not self.stop.is_set():
                self.cycle += 1
                self.one_cycle()
        except Exception as e:  # noqa: BLE001 - a harness bug must be visible, not silent
            self.error = repr(e)
            say(f"worker {self.n} died: {e!r}")

    def one_cycle(self):
        c = self.client
        c.call("browse", "GET", f"/api/shop/products?q={urllib.parse.quote(self.rng.choice(self.words))}&limit=5")
        self.think()
        sku = self.rng.choice(self.hot if self.rng.random() < 0.5 else self.cold)
        c.call("product", "GET", f"/api/shop/products/{sku}")
        self.think()
        status, code, _, _ = c.call("cart_add", "POST", "/api/cart/items", {"productCode": sku, "quantity": 1})
        self.think()
        if status == 201:
            self.checkout()
        elif status not in (409,) or code == "idempotency_in_progress":
            # Unknown outcome (or a cart frozen by an unfinished checkout): look at the cart.
            s, _, cart, _ = c.call("cart_get", "GET", "/api/cart")
            if s == 200 and cart.get("lines") and not cart.get("checkoutInProgress"):
                self.checkout()
        if self.cycle % FACTORY_EVERY == self.n % FACTORY_EVERY:
            self.factory_order()
        self.think()

    def retryable(self, status, code):
        return status == 0 or status >= 500 or (status == 409 and code == "idempotency_in_progress") or status == 429

    def checkout(self):
        c = self.client
        key = f"co-{STAMP}-{self.n}-{self.cycle}"
        entry = {"user": self.user["id"], "outcome": "unknown", "order_id": None, "at": None, "statuses": []}
        with LEDGER.lock:
            LEDGER.checkouts[key] = entry
        probe = self.rng.random() < PROBE_SHARE
        deadline = time.time() + CHECKOUT_RETRY_SECS
        backoff = 0.25
        first = True
        while True:
            if first and probe:
                # A client that hangs up without reading the answer, then retries with the key.
                status, code, obj, rid = c.call("probe", "POST", "/api/cart/checkout", key=key, timeout=0)
            else:
                status, code, obj, rid = c.call("checkout" if first else "checkout_retry", "POST", "/api/cart/checkout", key=key)
            first = False
            entry["statuses"].append(attempt(status, code, rid))
            if status == 201:
                entry.update(outcome="placed", order_id=obj["id"], at=time.time(), total=obj.get("total"))
                break
            if self.retryable(status, code) or (probe and len(entry["statuses"]) == 1):
                if time.time() > deadline:
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 4.0)
                continue
            entry["outcome"] = f"refused:{status}:{code}"
            break
        if entry["outcome"] == "placed":
            self.think()
            s, _, order, _ = c.call("order_get", "GET", f"/api/shop/orders/{entry['order_id']}")
            if s == 404 or (s == 200 and order.get("status") != "placed"):
                REC.violation(f"checkout {key}: order {entry['order_id']} acknowledged 201 but read back {s} {order}")
            if self.rng.random() < REPLAY_SHARE:
                for _ in range(5):
                    s, code, again, replayed = c.call("checkout_replay", "POST", "/api/cart/checkout", key=key)
                    if s == 201:
                        if again.get("id") != entry["order_id"]:
                            REC.violation(f"checkout {key} replayed another order: {again.get('id')} != {entry['order_id']}")
                        break
                    if not self.retryable(s, code):
                        REC.violation(f"checkout {key} replay answered {s} {code} after 201")
                        break
                    time.sleep(0.5)
        elif entry["outcome"].startswith("refused"):
            self.clear_cart()

    def clear_cart(self):
        c = self.client
        s, _, cart, _ = c.call("cart_get", "GET", "/api/cart")
        if s == 200:
            for line in cart.get("lines", []):
                c.call("cart_del", "DELETE", f"/api/cart/items/{line['productCode']}")

    def factory_order(self):
        c = self.client
        key = f"fo-{STAMP}-{self.n}-{self.cycle}"
        entry = {"user": self.user["id"], "outcome": "unknown", "order_id": None, "at": None, "statuses": []}
        with LEDGER.lock:
            LEDGER.factory[key] = entry
        deadline = time.time() + FACTORY_RETRY_SECS
        backoff = 0.5
        first = True
        body = {"configId": self.user["config_id"], "userId": self.user["id"]}
        while True:
            status, code, obj, rid = c.call("factory_order" if first else "factory_retry", "POST", "/api/factory/order", body, key=key)
            first = False
            entry["statuses"].append(attempt(status, code, rid))
            if status in (201, 202):
                entry.update(outcome=f"placed:{status}", order_id=obj["orderId"], at=time.time())
                break
            if self.retryable(status, code):
                if time.time() > deadline:
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 4.0)
                continue
            entry["outcome"] = f"refused:{status}:{code}"
            break
        if entry["order_id"]:
            self.think()
            s, _, order, _ = c.call("factory_get", "GET", f"/api/factory/order/{entry['order_id']}")
            if s == 404:
                REC.violation(f"factory order {entry['order_id']} (key {key}) acknowledged {entry['outcome']} but read back 404")


class StockReader(threading.Thread):
    """An admin polling inventory stock through both gateways (so the gateways route to inventory)."""

    def __init__(self, gateways, token, skus, stop):
        super().__init__(daemon=True, name="stock-reader")
        self.client = Client(gateways, "admin", token)
        self.skus, self.stop = skus, stop

    def run(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            self.client.call("stock_get", "GET", f"/api/inventory/stock/{self.skus[i % len(self.skus)]}", gw=i % 2)
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# Statistics and invariants


def classify(status, code):
    if 200 <= status < 300:
        return "ok"
    if status == 409 and code in ("out_of_stock", "hold_limit_exceeded"):
        return "expected"
    if status == 409 and code == "idempotency_in_progress":
        return "in_progress"
    if status == 0:
        return "transport"
    if status >= 500:
        return "5xx"
    return "other4xx"


def pct(sorted_values, q):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(round((len(sorted_values) - 1) * q)))]


def window_stats(t_from, t_to, kinds=None):
    rows = [r for r in list(REC.rows) if t_from <= r[0] < t_to and r[2] != "probe" and (kinds is None or r[2] in kinds)]
    counts = {"ok": 0, "expected": 0, "in_progress": 0, "transport": 0, "5xx": 0, "other4xx": 0}
    bad = {}
    for r in rows:
        k = classify(r[3], r[4])
        counts[k] += 1
        if k in ("transport", "5xx", "other4xx"):
            label = f"{r[3]} {r[4]}".strip() if r[3] else "transport"
            bad[label] = bad.get(label, 0) + 1
    lat = sorted(r[1] for r in rows)
    errors = counts["transport"] + counts["5xx"] + counts["other4xx"]
    return {
        "requests": len(rows),
        "seconds": t_to - t_from,
        "per_sec": len(rows) / max(t_to - t_from, 1e-9),
        "errors": errors,
        "error_rate": errors / len(rows) if rows else 0.0,
        "counts": counts,
        "bad": dict(sorted(bad.items(), key=lambda kv: -kv[1])),
        "p50_ms": pct(lat, 0.5) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": (lat[-1] if lat else 0) * 1000,
        "rows": rows,
    }


class Checks:
    def __init__(self):
        self.results = []  # (name, ok, detail)

    def add(self, name, ok, detail=""):
        self.results.append((name, bool(ok), detail))
        if not ok:
            say(f"CHECK FAILED: {name}: {detail}")

    @property
    def ok(self):
        return all(r[1] for r in self.results)

    def failed(self):
        return [f"{n}: {d}" for n, ok, d in self.results if not ok]


def outbox_state():
    """service -> (outbox rows ever written: the last value of its sequence, rows not yet
    published). The relay deletes a row once the bus acknowledged it, so every row still in
    the table is unpublished."""
    out = {}
    for s in SERVICES_WITH_DB:
        row = sql(s, "select coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'seq')), 0), count(*) from outbox")[0]
        out[s] = (int(row[0]), int(row[1]))
    return out


def wait_outbox(checkpoint, bound):
    """Seconds until every outbox row up to `checkpoint` (service -> seq; None: all) is
    published, or None past `bound`; and the leftovers."""
    start = time.time()
    left = {}
    while time.time() - start < bound:
        left = {}
        for s in SERVICES_WITH_DB:
            cond = f"where seq <= {checkpoint[s]}" if checkpoint else ""
            try:
                n = int(sql(s, f"select count(*) from outbox {cond}")[0][0])
            except RuntimeError as e:
                n = -1
                left[s] = str(e)
            if n:
                left.setdefault(s, n)
        if not left:
            return time.time() - start, {}
        time.sleep(0.25)
    return None, left


def stream_messages():
    """Messages in each of the namespace's JetStream streams."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nats_streams", os.path.join(ROOT, "deploy", "local", "nats-streams.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    nats = mod.Nats(f"nats://127.0.0.1:{NATS_PORT}")
    out = {}
    for s in SERVICES_WITH_DB:
        info = nats.request(f"$JS.API.STREAM.INFO.{NAMESPACE.upper()}_{s.upper()}")
        out[s] = info.get("state", {}).get("messages", 0) if "error" not in info else 0
    nats.sock.close()
    return out


def check_state(checks, ctx, final=False):
    """The invariants that hold at any moment, even under load (and the final ones)."""
    with LEDGER.lock:
        checkouts = dict(LEDGER.checkouts)
        factory = dict(LEDGER.factory)
    # Every acknowledged checkout is a placed order (placed is final).
    shop_orders = {r[0]: r for r in sql("shop", "select id, status, user_id, idempotency_key, total_minor, coalesce(charge_id, '') from orders")}
    acked = {k: e for k, e in checkouts.items() if e["outcome"] == "placed"}
    lost = [f"{k}->{e['order_id']}:{shop_orders.get(e['order_id'], [None, 'missing'])[1]}" for k, e in acked.items()
            if shop_orders.get(e["order_id"], [None, None])[1] != "placed"]
    checks.add("acknowledged checkouts are placed orders", not lost, f"{len(acked)} acknowledged" + (f"; lost: {lost[:5]}" if lost else ""))
    # ... and the key the client used is the key of that order (one order per key: unique in the schema).
    wrong_key = [k for k, e in acked.items() if e["order_id"] in shop_orders and shop_orders[e["order_id"]][3] != k]
    checks.add("checkout keys map to their orders", not wrong_key, str(wrong_key[:5]) if wrong_key else "")
    # Every acknowledged car order exists and has not failed.
    f_orders = {r[0]: r for r in sql("factory", "select id, status, step, user_id, deposit, coalesce(charge_id, '') from orders")}
    f_acked = {k: e for k, e in factory.items() if e["order_id"]}
    f_lost = [f"{k}->{e['order_id']}" for k, e in f_acked.items() if e["order_id"] not in f_orders or f_orders[e["order_id"]][1] in ("failed",)]
    checks.add("acknowledged car orders exist", not f_lost, f"{len(f_acked)} acknowledged" + (f"; lost: {f_lost[:5]}" if f_lost else ""))
    # A sample read back through the API, as their owners.
    tokens = {u["id"]: u["token"] for u in ctx["users"]}
    since = ctx.get("since", 0)
    sample = [e for e in acked.values() if (e["at"] or 0) >= since][-20:]
    f_sample = [e for e in f_acked.values() if (e["at"] or 0) >= since][-10:]
    api_bad = []
    reader = Client(ctx["gateways"], "checker")
    for e in sample:
        reader.token = tokens[e["user"]]
        st, _, body, rid = reader.call("check", "GET", f"/api/shop/orders/{e['order_id']}", record=False)
        if st != 200 or body.get("status") != "placed":
            api_bad.append(f"shop order {e['order_id']}: {st} {body if st != 200 else body.get('status')} #{rid}")
    for e in f_sample:
        reader.token = tokens[e["user"]]
        st, _, body, rid = reader.call("check", "GET", f"/api/factory/order/{e['order_id']}", record=False)
        if st != 200 or body.get("statusCode") in ("failed",):
            api_bad.append(f"car order {e['order_id']}: {st} #{rid}")
    checks.add("acknowledged orders read back through the gateways", not api_bad,
               f"{len(sample)} shop and {len(f_sample)} car orders" + (f"; {api_bad[:5]}" if api_bad else ""))
    # No second charge for one order (shop or factory).
    dup = sql("payments", "select reference, count(*) from charges group by reference having count(*) > 1")
    checks.add("one charge per order", not dup, str(dup[:5]) if dup else f"{sql('payments', 'select count(*) from charges')[0][0]} charges")
    # No more car orders per user than keys the user sent (a retried key placed nothing again).
    # Keys are counted after the orders were read: a key is noted before its first request.
    with LEDGER.lock:
        keys_now = dict(LEDGER.factory)
    keys_per_user = {}
    for e in keys_now.values():
        keys_per_user[e["user"]] = keys_per_user.get(e["user"], 0) + 1
    orders_per_user = {}
    for r in f_orders.values():
        orders_per_user[r[3]] = orders_per_user.get(r[3], 0) + 1
    extra = {u: (n, keys_per_user.get(u, 0)) for u, n in orders_per_user.items() if n > keys_per_user.get(u, 0)}
    checks.add("no more car orders than keys sent", not extra, f"(orders, keys) per user: {extra}" if extra else f"{len(f_orders)} car orders, {len(keys_now)} keys")
    ids = [e["order_id"] for e in f_acked.values()]
    checks.add("one car order per key", len(ids) == len(set(ids)), "")
    if final:
        # Every car order is the answer stored for exactly one key; one that is no key's answer
        # was placed by a request whose key then placed another.
        answered = {}
        for key, status, body in sql("factory", "select key, coalesce(status, 0), coalesce(convert_from(response, 'UTF8'), '') from idempotency_keys where scope like '%:factory-order'"):
            try:
                oid = json.loads(body).get("orderId") if body else None
            except ValueError:
                oid = None
            if oid:
                answered.setdefault(oid, []).append(key)
        orphans = [oid for oid in f_orders if oid not in answered]
        twice = {oid: ks for oid, ks in answered.items() if len(ks) > 1}
        detail = []
        for oid in orphans[:5]:
            r = f_orders[oid]
            created = sql("factory", f"select created_at, failure from orders where id = '{oid}'")[0]
            at = datetime.datetime.fromtimestamp(int(created[0]) / 1000, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
            retried = [f"{k}: {e['statuses']}" for k, e in keys_now.items() if e["user"] == r[3] and len(e["statuses"]) > 1]
            detail.append(f"order {oid} (user {r[3]}, created {at}, {r[1]}/{r[2]}, deposit charge {r[5] or 'none'}) is no key's answer; that user's retried keys: {retried}")
        checks.add("every car order is the answer of exactly one key", not orphans and not twice,
                   f"{len(f_orders)} car orders, {len(answered)} answered" + (f"; {len(orphans)} orphan(s): " + " || ".join(detail) if orphans else "") + (f"; twice: {twice}" if twice else ""))
    # Stock: never oversold, and conserved (one snapshot: initial - quantity = sold).
    bad = sql("inventory", "select sku, quantity, held from stock where quantity < 0 or held < 0 or held > quantity")
    checks.add("no oversell (0 <= held <= quantity)", not bad, str(bad[:5]) if bad else "")
    skus = ",".join(f"'{s}'" for s in ctx["initial"])
    rows = sql("inventory", f"select s.sku, s.quantity, s.held, coalesce((select sum(quantity) from sales where sku = s.sku), 0) from stock s where s.sku in ({skus})")
    broken = [(r[0], ctx["initial"][r[0]], r[1], r[3]) for r in rows if ctx["initial"][r[0]] - int(r[1]) != int(r[3])]
    sold = sum(int(r[3]) for r in rows)
    checks.add("stock conserved (initial - sold = quantity)", not broken and len(rows) == len(ctx["initial"]),
               f"{len(rows)} SKUs, {sold} units sold" + (f"; broken (sku, initial, quantity, sold): {broken[:5]}" if broken else ""))
    # Inventory's own consistency check (held = sum of live holds per SKU and owner).
    for _ in range(5):
        s, _, body, _ = ctx["admin"].call("check", "GET", "/api/inventory/check", record=False)
        if s == 200:
            break
        time.sleep(1)
    checks.add("inventory check consistent", s == 200 and body.get("consistent") is True, "" if s == 200 and body.get("consistent") else f"{s} {body}")
    if not final:
        return
    # Final: with the load stopped and every order settled.
    placed = {oid: r for oid, r in shop_orders.items() if r[1] == "placed"}
    charges = {}
    for r in sql("payments", "select reference, status, authorized, captured, refunded, user_id from charges"):
        charges[r[0]] = r
    problems = []
    for oid, r in shop_orders.items():
        ch = charges.get(f"order:{oid}")
        if r[1] == "placed":
            if not ch or ch[1] != "captured" or int(ch[3]) != int(r[4]) or int(ch[4]) != 0:
                problems.append(f"placed {oid}: charge {ch}")
        elif r[1] == "failed":
            if ch and int(ch[3]) - int(ch[4]) != 0:
                problems.append(f"failed {oid}: charge {ch} not refunded")
        else:
            problems.append(f"{oid} still {r[1]}")
    orphans = [ref for ref in charges if ref.startswith("order:") and ref[6:] not in shop_orders]
    checks.add("every placed order charged once, failed ones refunded", not problems and not orphans,
               f"{len(placed)} placed, {len(shop_orders) - len(placed)} failed/other" + (f"; {problems[:5]} orphans {orphans[:5]}" if problems or orphans else ""))
    f_problems = []
    for oid, r in f_orders.items():
        ch = charges.get(f"factory-order:{oid}")
        if r[1] in ("failed", "cancelled"):
            if ch and int(ch[3]) - int(ch[4]) != 0:
                f_problems.append(f"{r[1]} {oid}: deposit {ch} not refunded")
        elif int(r[4]) > 0 and (not ch or int(ch[3]) != int(r[4])):
            f_problems.append(f"{r[1]} {oid}: deposit {r[4]} charge {ch}")
        if r[2] not in ("done", "await_parts"):
            f_problems.append(f"{oid} unfinished at step {r[2]}")
    checks.add("every car order's deposit charged once", not f_problems, f"{len(f_orders)} car orders" + (f"; {f_problems[:5]}" if f_problems else ""))
    # Units sold per SKU = units of placed orders.
    by_orders = {r[0]: int(r[1]) for r in sql("shop", "select l.product_code, sum(l.quantity) from order_lines l join orders o on o.id = l.order_id where o.status = 'placed' group by 1")}
    sold_rows = {r[0]: int(r[1]) for r in sql("inventory", "select sku, sum(quantity) from sales group by 1")}
    mismatch = {s: (sold_rows.get(s, 0), by_orders.get(s, 0)) for s in set(by_orders) | set(sold_rows) if sold_rows.get(s, 0) != by_orders.get(s, 0)}
    checks.add("units sold = units in placed orders", not mismatch, f"{sum(sold_rows.values())} units" + (f"; (sold, ordered): {mismatch}" if mismatch else ""))
    # Wallets: balance + held = top-ups - captured + refunded, per worker.
    w_bad = []
    for uid, topped in LEDGER.topped_up.items():
        row = sql("payments", f"select coalesce(sum(balance) filter (where kind = 'wallet'), 0), coalesce(sum(balance) filter (where kind = 'held'), 0) from accounts where owner_id = '{uid}'")[0]
        spent = sql("payments", f"select coalesce(sum(captured - refunded), 0) from charges where user_id = '{uid}'")[0][0]
        if int(row[0]) + int(row[1]) != topped - int(spent):
            w_bad.append((uid, row, topped, spent))
    checks.add("wallets = top-ups - charges + refunds", not w_bad, f"{len(LEDGER.topped_up)} wallets" + (f"; {w_bad[:3]}" if w_bad else ""))
    s, _, body, _ = ctx["admin"].call("ledger", "GET", "/api/admin/payments/ledger", record=False)
    checks.add("payments ledger balanced", s == 200 and body.get("balanced") is True, json.dumps(body)[:300] if s != 200 or not body.get("balanced") else "")
    unknown = [k for k, e in checkouts.items() if e["outcome"] == "unknown"]
    if unknown:
        states = [shop_orders.get(next((o for o, r in shop_orders.items() if r[3] == k), ""), [None, "no order"])[1] for k in unknown]
        checks.add("checkouts whose outcome the client never learnt are settled", all(st in ("placed", "failed", "no order") for st in states),
                   f"{len(unknown)}: {states[:10]}")


# ---------------------------------------------------------------------------------------------
# Faults


def gateway_overview(admin, gw_index, service, addr):
    """(listed, ejected) for `addr` in one gateway's admin overview, or None."""
    s, _, body, _ = admin.call("overview", "GET", "/api/admin/overview", gw=gw_index, record=False)
    if s != 200:
        return None
    for svc in body.get("services", []):
        if svc.get("service") == service:
            for inst in svc.get("instances", []):
                if inst.get("address") == addr:
                    return True, bool(inst.get("ejected"))
            return False, False
    return False, False


def ejections_in_logs(addr, since):
    """Per gateway, the first 'replica ejected' log time for `addr` after `since`."""
    found = {}
    for name in sorted(n for n in PLAN if PLAN[n][0] == "gateway"):
        path = os.path.join(STATE_DIR, "logs", f"{name}.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if "replica ejected" not in line or addr not in line:
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    ts = rec.get("timestamp") or rec.get("time") or ""
                    try:
                        t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                    except ValueError:
                        continue
                    if t >= since:
                        found[name] = t
                        break
        except OSError:
            pass
    return found


def ejections_between(t_from, t_to):
    """Replicas the gateways ejected in [t_from, t_to): name -> times (both gateways)."""
    by_addr = {addr: name for name, (_, addr) in PLAN.items()}
    out = {}
    for name in sorted(n for n in PLAN if PLAN[n][0] == "gateway"):
        try:
            with open(os.path.join(STATE_DIR, "logs", f"{name}.log"), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if "replica ejected" not in line:
                        continue
                    try:
                        rec = json.loads(line)
                        t = datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
                    except (ValueError, KeyError):
                        continue
                    if t_from <= t < t_to:
                        victim = by_addr.get(rec.get("upstream"), rec.get("upstream"))
                        out[victim] = out.get(victim, 0) + 1
        except OSError:
            pass
    return dict(sorted(out.items()))


def fault_kill9(victim, ctx):
    service, addr = PLAN[victim]
    admin = ctx["admin"]
    m = {"victim": victim}
    assert addr in live_registrations(service), f"{victim} is not registered before the kill"
    pid = int(cluster("pid", victim).strip())
    t_kill = time.time()
    os.kill(pid, signal.SIGKILL)
    say(f"kill -9 {victim} (pid {pid}, {addr})")
    ejected = {}
    dereg = None
    while time.time() - t_kill < TTL_SECS + 5:
        now = time.time()
        if dereg is None and addr not in live_registrations(service):
            dereg = now - t_kill
        for gi in range(2):
            if gi not in ejected:
                st = gateway_overview(admin, gi, service, addr)
                if st is not None and (st[1] or not st[0]):
                    ejected[gi] = now - t_kill
        if dereg is not None and len(ejected) == 2:
            break
        time.sleep(0.1)
    m["deregistered_s"] = dereg
    m["overview_ejected_s"] = {f"gateway-{gi + 1}": round(v, 2) for gi, v in sorted(ejected.items())}
    logs = ejections_in_logs(addr, t_kill)
    m["log_ejected_s"] = {k: round(v - t_kill, 3) for k, v in logs.items()}
    m["t_restart"] = time.time()
    cluster("start", victim)
    say(f"restarted {victim}")
    return m


def fault_signal_pause(victim, ctx):
    pid = int(cluster("pid", victim).strip())
    os.kill(pid, signal.SIGSTOP)
    say(f"SIGSTOP {victim} for {PAUSE_SECS}s")
    time.sleep(PAUSE_SECS)
    os.kill(pid, signal.SIGCONT)
    say(f"SIGCONT {victim}")
    return {"victim": victim, "t_restart": time.time(), "paused_s": PAUSE_SECS}


def fault_infra_stop(what, ctx):
    cluster("infra", "stop", what)
    say(f"{what} stopped for {DOWN_SECS}s")
    time.sleep(DOWN_SECS)
    cluster("infra", "start", what)
    t = time.time()
    say(f"{what} started")
    m = {"victim": what, "t_restart": t, "down_s": DOWN_SECS}
    if what == "redis":
        # It came back empty: every process registers again at its next heartbeat.
        want = {}
        for service, addr in PLAN.values():
            want.setdefault(service, set()).add(addr)
        while time.time() - t < TTL_SECS + 5:
            try:
                if all(addrs <= live_registrations(service) for service, addrs in want.items()):
                    m["registered_again_s"] = round(time.time() - t, 2)
                    break
            except (OSError, RuntimeError):
                pass
            time.sleep(0.1)
    return m


def fault_pg_restart(ctx):
    t = time.time()
    cluster("infra", "restart", "pg")
    say(f"PostgreSQL restarted (pg_ctl restart -m fast) in {time.time() - t:.1f}s")
    return {"victim": "postgres", "t_restart": time.time(), "restart_s": round(time.time() - t, 2)}


def fault_sigterm(victim, ctx):
    service, addr = PLAN[victim]
    t = time.time()
    cluster("stop", victim)
    stopped = time.time() - t
    say(f"SIGTERM {victim}: exited after {stopped:.2f}s")
    m = {"victim": victim, "stop_s": round(stopped, 2), "registered_after_stop": addr in live_registrations(service)}
    time.sleep(2)
    m["t_restart"] = time.time()
    cluster("start", victim)
    say(f"restarted {victim}")
    return m


FAULT_TABLE = {
    "kill9-shop": ("kill -9 a shop replica, restart it after its registration expired", lambda c: fault_kill9("shop-1", c)),
    "kill9-inventory": ("kill -9 an inventory replica, restart it after its registration expired", lambda c: fault_kill9("inventory-1", c)),
    "kill9-payments": ("kill -9 a payments replica, restart it after its registration expired", lambda c: fault_kill9("payments-1", c)),
    "kill9-factory": ("kill -9 a factory replica, restart it after its registration expired", lambda c: fault_kill9("factory-1", c)),
    "nats-stop": (f"NATS stopped for {DOWN_SECS:g} s, then started", lambda c: fault_infra_stop("nats", c)),
    "pg-restart": ("PostgreSQL restarted (pg_ctl restart -m fast)", fault_pg_restart),
    "sigstop-shop": (f"SIGSTOP a shop replica for {PAUSE_SECS:g} s, then SIGCONT", lambda c: fault_signal_pause("shop-2", c)),
    "sigstop-payments": (f"SIGSTOP a payments replica for {PAUSE_SECS:g} s, then SIGCONT", lambda c: fault_signal_pause("payments-1", c)),
    "sigstop-inventory": (f"SIGSTOP an inventory replica for {PAUSE_SECS:g} s, then SIGCONT", lambda c: fault_signal_pause("inventory-2", c)),
    "redis-stop": (f"Redis stopped for {DOWN_SECS:g} s (no persistence: it comes back empty), then started", lambda c: fault_infra_stop("redis", c)),
    "sigterm-shop": ("SIGTERM a shop replica under load (graceful), restart it", lambda c: fault_sigterm("shop-2", c)),
    "sigterm-payments": ("SIGTERM a payments replica under load (graceful), restart it", lambda c: fault_sigterm("payments-2", c)),
    "sigterm-inventory": ("SIGTERM an inventory replica under load (graceful), restart it", lambda c: fault_sigterm("inventory-2", c)),
}

SHOP_KINDS = {"browse", "product", "cart_add", "cart_get", "cart_del", "checkout", "checkout_retry", "checkout_replay", "order_get"}


def run_fault(name, ctx):
    what, inject = FAULT_TABLE[name]
    say(f"=== {name}: {what}")
    time.sleep(PRE)
    checkpoint = {s: v[0] for s, v in outbox_state().items()}
    t_fault = time.time()
    ctx["since"] = t_fault - PRE
    m = inject(ctx)
    # Measured from the end of the fault (the restart, SIGCONT, or the server started again).
    all_ready = wait_all_ready(READY_BOUND)
    t_ready = time.time()
    ready_s = None if all_ready is None else t_ready - m["t_restart"]
    say(f"all ready {ready_s if ready_s is None else round(ready_s, 2)}s after the fault ended")
    time.sleep(POST)
    t_end = time.time()
    stats = window_stats(t_fault, t_end)
    checks = Checks()
    checks.add(f"every process /ready 200 within {READY_BOUND:g} s", ready_s is not None, "" if ready_s is not None else "not ready: " + ", ".join(n for n, (_, a) in PLAN.items() if not ready(a)))
    drained_s, left = wait_outbox(checkpoint, OUTBOX_BOUND)
    checks.add(f"outbox rows of before the fault published within {OUTBOX_BOUND:g} s", drained_s is not None, str(left) if left else "")
    check_state(checks, ctx)
    dead = [n for n in PLAN if not pid_alive(n)]
    checks.add("every process alive", not dead, str(dead) if dead else "")
    if name.startswith("kill9"):
        service, addr = PLAN[m["victim"]]
        dereg = m.get("deregistered_s")
        checks.add(f"registration expired within the TTL ({TTL_SECS} s)", dereg is not None and dereg <= TTL_SECS + 0.5, f"{dereg}")
        if service == "shop":
            # Out of rotation: the first of the gateway's own "replica ejected" log line and
            # the admin overview showing it ejected (or no longer listed).
            first = {}
            for g in ("gateway-1", "gateway-2"):
                seen = [v for v in (m["log_ejected_s"].get(g), m["overview_ejected_s"].get(g)) if v is not None]
                first[g] = min(seen) if seen else None
            m["ejected_s"] = first
            checks.add(f"killed replica out of rotation within {EJECT_BOUND:g} s at both gateways",
                       all(v is not None and v <= EJECT_BOUND for v in first.values()), str(first))
        # The last client-visible failure of the killed service's routes after the kill.
        kinds = SHOP_KINDS if service == "shop" else None
        fails = [r for r in stats["rows"] if classify(r[3], r[4]) in ("transport", "5xx") and (kinds is None or r[2] in kinds) and r[0] < m["t_restart"]]
        m["failures_after_kill"] = len(fails)
        m["last_failure_s"] = round(max(r[0] + r[1] for r in fails) - t_fault, 2) if fails else None
        m["failure_ids"] = [r[7] for r in fails if r[7]][:3]
        checks.add(f"no client-visible failure later than {EJECT_BOUND:g} s after the kill",
                   m["last_failure_s"] is None or m["last_failure_s"] <= EJECT_BOUND,
                   f"{len(fails)} failures, the last {m['last_failure_s']} s after the kill; e.g. request ids {m['failure_ids']}" if fails else "none")
    if name.startswith("sigterm"):
        inflight = window_stats(t_fault, t_ready + 1.0)
        lost = inflight["counts"]["5xx"] + inflight["counts"]["transport"]
        checks.add("graceful stop: no request failed (5xx or transport) while it stopped and came back", lost == 0, json.dumps(inflight["bad"]))
        checks.add("deregistered before exit", not m["registered_after_stop"], "")
    m["gateway_ejections"] = ejections_between(t_fault, t_end)
    REC_V = [v for v in REC.violations if t_fault - PRE <= v[0]]
    checks.add("no client-side violation (read-your-write, replay)", not REC_V, str([v[1] for v in REC_V][:3]))
    return {"name": name, "what": what, "m": m, "ready_s": ready_s, "drained_s": drained_s, "stats": stats, "checks": checks,
            "t_fault": t_fault, "t_end": t_end}


# ---------------------------------------------------------------------------------------------
# Set-up, run, report


def set_up(gateways):
    admin = Client(gateways, "setup-admin")
    s, code, body, _ = admin.call("login", "POST", "/api/auth/login", {"email": ADMIN[0], "password": ADMIN[1]}, gw=0, record=False)
    if s != 200:
        raise RuntimeError(f"admin login: {s} {code} {body}")
    admin.token = body["accessToken"]
    demo = Client(gateways, "demo")
    must(demo.call("login", "POST", "/api/auth/login", {"email": DEMO[0], "password": DEMO[1]}, gw=1, record=False), "demo login")
    # Parts: HOT_SKUS scarce ones (they sell out during the run) and COLD_SKUS plentiful ones.
    items = must(admin.call("catalog", "GET", "/api/shop/products?limit=100", gw=0, record=False), "catalog")["items"]
    codes = sorted(i["code"] for i in items)
    rng = random.Random(7)
    rng.shuffle(codes)
    hot, cold = codes[:HOT_SKUS], codes[HOT_SKUS:HOT_SKUS + COLD_SKUS]
    words = sorted({w.lower() for i in items if i["code"] in hot + cold for w in i["name"].split()[:1]} | {i["category"].lower() for i in items})
    initial = {}
    for code, qty in [(c, HOT_QTY) for c in hot] + [(c, COLD_QTY) for c in cold]:
        body = must(admin.call("stock", "PUT", f"/api/inventory/stock/{code}", {"quantity": qty}, gw=0, record=False), f"stock {code}")
        initial[code] = int(body["quantity"])
    users = []
    for n in range(WORKERS):
        c = Client(gateways, f"setup-{n}")
        email, password = f"faults-{STAMP.lower()}-{n}@bench.motorpool.local", "fault test password"
        must(c.call("register", "POST", "/api/auth/register", {"email": email, "password": password, "fullName": f"Fault Tester {n}"}, gw=n % 2, record=False), "register")
        c.token = must(c.call("login", "POST", "/api/auth/login", {"email": email, "password": password}, gw=n % 2, record=False), "login")["accessToken"]
        uid = must(c.call("me", "GET", "/api/auth/me", gw=n % 2, record=False), "me")["id"]
        must(c.call("top-up", "POST", "/api/payments/wallet/top-up", {"amount": {"amount": "1000000.00", "currency": "EUR"}, "cardNumber": "4242424242424242"},
                    key=f"topup-{STAMP}-{n}", gw=n % 2, record=False), "top-up")
        LEDGER.topped_up[uid] = TOP_UP_MINOR
        config_id = must(c.call("configure", "POST", "/api/configure", CAR, gw=n % 2, record=False), "configure")["configId"]
        users.append({"id": uid, "token": c.token, "config_id": config_id})
    # The car's parts: plenty (held by car orders, not sold before production).
    config = must(admin.call("config", "GET", f"/api/configure/{users[0]['config_id']}", gw=0, record=False), "configuration")
    for opt in config["options"]:
        sku = "CAR-" + re.sub(r"[^A-Za-z0-9.]", "-", opt).upper()
        body = must(admin.call("stock", "PUT", f"/api/inventory/stock/{sku}", {"quantity": 100000}, gw=0, record=False), f"stock {sku}")
        initial[sku] = int(body["quantity"])
    return {"admin": admin, "users": users, "hot": hot, "cold": cold, "words": words, "initial": initial, "gateways": gateways}


def fmt(v, unit="", nd=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def notes_for(r):
    m, parts = r["m"], []
    if "deregistered_s" in m:
        parts.append(f"registration expired after {fmt(m['deregistered_s'], ' s')}")
    if m.get("ejected_s"):
        parts.append("out of rotation after " + ", ".join(f"{k} {fmt(v, ' s')}" for k, v in m["ejected_s"].items()))
    if "failures_after_kill" in m:
        parts.append(f"{m['failures_after_kill']} client-visible failures (5xx, transport) before the restart" + (f", the last {m['last_failure_s']} s after the kill" if m["last_failure_s"] is not None else ""))
    if "stop_s" in m:
        parts.append(f"exited {m['stop_s']} s after SIGTERM, {'still' if m['registered_after_stop'] else 'not'} registered after exit")
    if "registered_again_s" in m:
        parts.append(f"every process registered again {m['registered_again_s']} s after Redis started")
    if "restart_s" in m:
        parts.append(f"pg_ctl restart took {m['restart_s']} s")
    if m.get("gateway_ejections"):
        parts.append("gateway ejections: " + ", ".join(f"{k} ×{v}" for k, v in m["gateway_ejections"].items()))
    bad = r["stats"]["bad"]
    if bad:
        parts.append("errors: " + ", ".join(f"{k} ×{v}" for k, v in list(bad.items())[:4]))
    ip = r["stats"]["counts"]["in_progress"]
    if ip:
        parts.append(f"409 idempotency_in_progress ×{ip} (retried)")
    return "; ".join(parts)


def report(results, baseline, final, setup_s, total_s, final_stats, cmdline):
    lines = []
    lines.append(f"# Fault tests on the local cluster ({datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')})")
    lines.append("")
    lines.append(f"- Machine: {machine()}; everything (13 motorpool processes, PostgreSQL, NATS, Redis, the load) on it; load average {LOADAVG[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1 min), other work on the machine included.")
    lines.append(f"- Binary: `{BIN}`; command: `{cmdline}`.")
    lines.append(f"- Cluster: `deploy/local/cluster.sh` with `PRIVATE_INFRA=1`: 2 gateways, 2 × shop, inventory, factory, payments; 1 × identity, configurator, notifications; discovery TTL {TTL_SECS} s, gateway.upstream_timeout_ms {UPSTREAM_TIMEOUT_MS}, up in {setup_s:.1f} s.")
    lines.append(f"- Load: {WORKERS} customers (browse, product, add to cart, checkout with an Idempotency-Key, read the order; a car order every {FACTORY_EVERY} cycles) through both gateways, think time {THINK_MS} ms, plus an admin reading stock every 100 ms; {HOT_SKUS} scarce parts ({HOT_QTY} units) and {COLD_SKUS} plentiful ones. {PROBE_SHARE:.0%} of checkouts first sent by a client that hangs up without reading the answer and then retries with the same key, {REPLAY_SHARE:.0%} of successful ones sent again with their key.")
    lines.append(f"- Window of a fault: from the fault until {POST:g} s after every process answered /ready again. Errors: transport errors, 5xx and unexpected 4xx (409 out_of_stock and 409 idempotency_in_progress are not errors; the latter is counted apart). Latency over every request of the window. 'all /ready after': from the end of the fault (the replica restarted, SIGCONT, the server started again) until all 13 processes answered /ready 200. 'outbox drained after': until every outbox row written before the fault was published. Whole run: {total_s:.0f} s.")
    lines.append("")
    lines.append("| fault | requests | errors | error rate | p50 ms | p99 ms | max ms | all /ready after | outbox drained after | invariants | notes |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    b = baseline
    lines.append(f"| baseline (no fault, {b['seconds']:.0f} s) | {b['requests']} | {b['errors']} | {b['error_rate']:.2%} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['max_ms']:.0f} | — | — | — | {b['per_sec']:.0f} req/s |")
    for r in results:
        s = r["stats"]
        inv = "pass" if r["checks"].ok else "**FAIL**: " + "; ".join(r["checks"].failed())[:300]
        lines.append(f"| {r['what']} | {s['requests']} | {s['errors']} | {s['error_rate']:.2%} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.0f} | {fmt(r['ready_s'], ' s')} | {fmt(r['drained_s'], ' s')} | {inv} | {notes_for(r)} |")
    lines.append("")
    fs = final_stats
    lines.append(f"Whole load: {fs['requests']} requests in {fs['seconds']:.0f} s ({fs['per_sec']:.0f} req/s), {fs['errors']} errors ({fs['error_rate']:.2%}), p50 {fs['p50_ms']:.1f} ms, p99 {fs['p99_ms']:.1f} ms.")
    with LEDGER.lock:
        co = list(LEDGER.checkouts.values())
        fo = list(LEDGER.factory.values())
    outcomes = {}
    for e in co:
        k = e["outcome"] if not e["outcome"].startswith("refused") else e["outcome"]
        outcomes[k] = outcomes.get(k, 0) + 1
    retried = sum(1 for e in co if len(e["statuses"]) > 1)
    oos = sum(1 for r in REC.rows if r[3] == 409 and r[4] == "out_of_stock")
    lines.append(f"Checkouts: {len(co)} ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}); {retried} needed more than one attempt with their key. Car orders: {len(fo)} ({sum(1 for e in fo if e['order_id'])} acknowledged). Adds to cart refused 409 out_of_stock (the scarce parts sold out): {oos}.")
    lines.append("")
    lines.append("Final checks (load stopped, orders settled):")
    lines.append("")
    lines.append("| check | result | detail |")
    lines.append("|---|---|---|")
    for n, ok, d in final.results:
        lines.append(f"| {n} | {'pass' if ok else '**FAIL**'} | {d.replace('|', '/')[:300]} |")
    failed = [(r["what"], n, d) for r in results for n, ok, d in r["checks"].results if not ok] + [("final", n, d) for n, ok, d in final.results if not ok]
    if failed:
        lines.append("")
        lines.append("Failed checks in full:")
        lines.append("")
        for what, n, d in failed:
            lines.append(f"- {what}: {n}: {d}")
    return "\n".join(lines) + "\n"


def dump_tables():
    """The tables the checks read, as CSV in OUT/db (evidence for a failed check)."""
    os.makedirs(os.path.join(OUT, "db"), exist_ok=True)
    queries = {
        "factory-orders": ("factory", "select id, user_id, status, step, deposit, charge_id, failure, created_at, updated_at from orders order by created_at"),
        "factory-timeline": ("factory", "select * from order_timeline order by order_id, seq"),
        "factory-idempotency": ("factory", "select scope, key, status, created_at, convert_from(response, 'UTF8') as response from idempotency_keys order by created_at"),
        "shop-orders": ("shop", "select id, user_id, status, total_minor, charge_id, failure, idempotency_key, created_at, updated_at from orders order by created_at"),
        "payments-charges": ("payments", "select id, user_id, reference, status, authorized, captured, refunded, created_at from charges order by created_at"),
        "inventory-stock": ("inventory", "select * from stock order by sku"),
    }
    for name, (service, query) in queries.items():
        path = os.path.join(OUT, "db", f"{name}.csv")
        r = subprocess.run(["psql", f"{PG_URL}/{NAMESPACE}_{service}", "-X", "-q", "-c", f"\\copy ({query}) to '{path}' csv header"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            say(f"dump {name}: {r.stderr.strip()}")


def main():
    global CLUSTER_UP, PLAN
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    atexit.register(teardown)
    os.makedirs(OUT, exist_ok=True)
    if not os.access(BIN, os.X_OK):
        say(f"no motorpool binary at {BIN} (BIN=...)")
        return 2
    for f in FAULTS:
        if f not in FAULT_TABLE:
            say(f"unknown fault {f}; known: {', '.join(FAULT_TABLE)}")
            return 2
    say(f"cluster up (state in {STATE_DIR})")
    t = time.time()
    CLUSTER_UP = True
    out = cluster("up", timeout=300)
    setup_s = time.time() - t
    for line in cluster("list").splitlines():
        name, service, addr = line.split()
        PLAN[name] = (service, addr)
    gateways = [PLAN[n][1] for n in sorted(n for n in PLAN if PLAN[n][0] == "gateway")]
    say(f"cluster ready in {setup_s:.1f}s: {out.strip()}")
    ctx = set_up(gateways)
    say(f"{WORKERS} users, {len(ctx['initial'])} SKUs stocked")
    stop = threading.Event()
    workers = [Worker(n, u, gateways, ctx["hot"], ctx["cold"], ctx["words"], stop) for n, u in enumerate(ctx["users"])]
    reader = StockReader(gateways, ctx["admin"].token, ctx["hot"] + ctx["cold"], stop)
    t_load = time.time()
    for w in workers + [reader]:
        w.start()
    time.sleep(WARMUP)
    t_base = time.time()
    time.sleep(max(PRE * 2, 5))
    baseline = window_stats(t_base, time.time())
    say(f"baseline: {baseline['per_sec']:.0f} req/s, p50 {baseline['p50_ms']:.1f} ms, p99 {baseline['p99_ms']:.1f} ms, errors {baseline['errors']}")
    results = []
    for name in FAULTS:
        results.append(run_fault(name, ctx))
        if any(w.error for w in workers):
            raise RuntimeError(f"a worker died: {[w.error for w in workers if w.error]}")
    stop.set()
    for w in workers + [reader]:
        w.join(timeout=CHECKOUT_RETRY_SECS + FACTORY_RETRY_SECS + 30)
    t_stop = time.time()
    final_stats = window_stats(t_load, t_stop)
    say("load stopped; settling")
    final = Checks()
    start = time.time()
    pending = None
    while time.time() - start < SETTLE_BOUND:
        pending = sql("shop", "select count(*) from orders where status = 'pending'")[0][0], sql(
            "factory", "select count(*) from orders where step in ('hold', 'deposit', 'book', 'compensate')")[0][0]
        if pending == ("0", "0"):
            break
        time.sleep(0.5)
    final.add(f"pending shop orders and unfinished car orders settle within {SETTLE_BOUND:g} s", pending == ("0", "0"),
              f"after {time.time() - start:.1f} s" + ("" if pending == ("0", "0") else f"; left (shop, factory): {pending}"))
    drained_s, left = wait_outbox(None, OUTBOX_BOUND)
    try:
        streams = stream_messages()
    except (OSError, ValueError) as e:
        streams = {"error": repr(e)}
    written = outbox_state()
    final.add(f"every outbox row published within {OUTBOX_BOUND:g} s", drained_s is not None,
              (f"after {drained_s:.2f} s; " if drained_s is not None else f"left: {left}; ")
              + "events written / in the stream: " + ", ".join(f"{s} {v[0]}/{streams.get(s, '?')}" for s, v in written.items() if v[0]))
    ready_s = wait_all_ready(READY_BOUND)
    final.add("every process ready", ready_s is not None, "")
    check_state(final, ctx, final=True)
    final.add("no client-side violation (read-your-write, replay)", not REC.violations, str([v[1] for v in REC.violations][:5]))
    panics = []
    for name in PLAN:
        path = os.path.join(STATE_DIR, "logs", f"{name}.log")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                panics += [f"{name}: {l.strip()[:300]}" for l in f if "panicked" in l]
        except OSError:
            pass
    final.add("no panic in any log", not panics, "; ".join(panics[:3]))
    total_s = time.time() - T0
    cmdline = os.environ.get("FAULTS_CMDLINE", "bench/faults.sh")
    text = report(results, baseline, final, setup_s, total_s, final_stats, cmdline)
    # Raw data: every request, what the clients were told, the cluster's logs.
    with open(os.path.join(OUT, "requests.jsonl"), "w") as f:
        for r in REC.rows:
            f.write(json.dumps({"t": round(r[0], 4), "latency_ms": round(r[1] * 1000, 2), "kind": r[2], "status": r[3], "code": r[4], "gateway": r[5], "client": r[6], "request_id": r[7]}) + "\n")
    with open(os.path.join(OUT, "told.json"), "w") as f:
        json.dump({"checkouts": LEDGER.checkouts, "factory": LEDGER.factory, "faults": [{"name": r["name"], "t_fault": r["t_fault"], "t_end": r["t_end"], **{k: v for k, v in r["m"].items()}} for r in results]}, f, indent=1, default=str)
    with open(os.path.join(OUT, "report.md"), "w") as f:
        f.write(text)
    if REPORT:
        with open(REPORT, "w") as f:
            f.write(text)
    print(text)
    dump_tables()
    teardown()
    try:
        shutil.copytree(os.path.join(STATE_DIR, "logs"), os.path.join(OUT, "logs"), dirs_exist_ok=True)
    except OSError as e:
        say("could not copy the logs:", e)
    ok = final.ok and all(r["checks"].ok for r in results)
    say(f"{'PASS' if ok else 'FAIL'}; raw data in {OUT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
