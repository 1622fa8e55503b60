#!/usr/bin/env python3
"""Reproduces a duplicate car order found by bench/faults.sh: a POST /api/factory/order whose
deposit call hangs longer than the gateway's upstream timeout is answered 504, its handler is
dropped with the gateway's connection, and a retry with the same Idempotency-Key after the
30 s idempotency lease places a second order (recovery finishes the first): two orders, two
deposits, for one key. Exits 1 when it sees the duplicate, 0 when there is one order.

    MOTORPOOL_GATEWAY__UPSTREAM_TIMEOUT_MS=3000 PRIVATE_INFRA=1 deploy/local/cluster.sh up
    bench/faults/repro_factory_duplicate.py
    deploy/local/cluster.sh down

Takes about a minute. STATE_DIR (default /tmp/motorpool-cluster) is the cluster's.
"""

import importlib.util
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("faults", os.path.join(HERE, "run.py"))
faults = importlib.util.module_from_spec(spec)
spec.loader.exec_module(faults)

STATE_DIR = os.environ.get("STATE_DIR", "/tmp/motorpool-cluster")


def main():
    plan = {}
    for line in faults.subprocess.run([faults.CLUSTER_SH, "list"], env=dict(os.environ, STATE_DIR=STATE_DIR),
                                      capture_output=True, text=True, check=True).stdout.splitlines():
        name, service, addr = line.split()
        plan[name] = (service, addr)
    gateways = [addr for name, (service, addr) in sorted(plan.items()) if service == "gateway"]
    payments = [name for name, (service, _) in plan.items() if service == "payments"]
    c = faults.Client(gateways, "repro")
    email, password = f"repro-{int(time.time())}@bench.motorpool.local", "repro password"
    faults.must(c.call("r", "POST", "/api/auth/register", {"email": email, "password": password, "fullName": "Repro"}, gw=0), "register")
    c.token = faults.must(c.call("l", "POST", "/api/auth/login", {"email": email, "password": password}, gw=0), "login")["accessToken"]
    uid = faults.must(c.call("me", "GET", "/api/auth/me", gw=0), "me")["id"]
    faults.must(c.call("t", "POST", "/api/payments/wallet/top-up", {"amount": {"amount": "1000000.00", "currency": "EUR"}, "cardNumber": "4242424242424242"},
                       key=f"top-up-{email}", gw=0), "top-up")
    config_id = faults.must(c.call("c", "POST", "/api/configure", faults.CAR, gw=0), "configure")["configId"]
    pids = [int(open(os.path.join(STATE_DIR, "pids", f"{n}.pid")).read()) for n in payments]
    body = {"configId": config_id, "userId": uid}
    key = f"repro-{int(time.time())}"
    t0 = time.time()

    def log(*a):
        print(f"{time.time() - t0:6.2f}s", *a, flush=True)

    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        log(f"every payments replica SIGSTOPped; POST /api/factory/order, Idempotency-Key {key}")
        s, code, obj, rid = c.call("f", "POST", "/api/factory/order", body, key=key, gw=0)
        log("answer:", s, code, f"x-request-id {rid}")
        time.sleep(2)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    log("payments SIGCONT")
    while time.time() - t0 < 60:
        s, code, obj, rid = c.call("f", "POST", "/api/factory/order", body, key=key, gw=0)
        log("retry with the same key:", s, code, (obj or {}).get("orderId", ""), f"x-request-id {rid}")
        if s in (201, 202):
            break
        time.sleep(3)
    time.sleep(25)  # recovery resumes an interrupted placing saga after factory.resume_after_ms (20 s)
    s, _, obj, _ = c.call("o", "GET", "/api/factory/orders", gw=0)
    items = obj if isinstance(obj, list) else (obj or {}).get("items", [])
    log(f"GET /api/factory/orders: {len(items)} order(s):", [(o.get("orderId") or o.get("id"), o.get("statusCode")) for o in items])
    return 1 if len(items) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
