#!/usr/bin/env python3
"""Markdown tables from one bench/haproxy.sh run: summarize.py OUT_DIR (reads results.tsv)."""

import csv
import json
import os
import statistics
import sys

out = sys.argv[1]
# A pair of runs counts as quiet when anything outside the benchmark used at most this share
# of the machine during each of them.
QUIET_PCT = float(os.environ.get("QUIET_PCT", "10"))
with open(os.path.join(out, "results.tsv")) as f:
    rows = list(csv.DictReader(f, delimiter="\t"))

VARIANTS = {
    "one": "one token for every request (the gateway's verified-token cache hits)",
    "many": "a different token of a different user on every request (at most 16,384 can be in the gateway's memo: it verifies most of them)",
}
ALG = {"gateway": "EdDSA", "gateway-base": "EdDSA", "haproxy-es256": "ES256", "haproxy-rs256": "RS256", "gateway-notoken": "none", "haproxy-notoken": "none"}
# (gateway target, HAProxy target, counts for the target)
PAIRS = [
    ("gateway", "haproxy-es256", True),
    ("gateway", "haproxy-rs256", True),
    ("gateway-notoken", "haproxy-notoken", False),
    # BASE_BIN=...: this build's gateway against another build's, and that one against HAProxy.
    ("gateway", "gateway-base", False),
    ("gateway-base", "haproxy-es256", False),
    ("gateway-base", "haproxy-rs256", False),
]


def num(r, k):
    return float(r[k])


def fmt_ratio(x):
    return f"{x:.2f}"


print("# Gateway against HAProxy (JWT + rate limit)\n")
if os.path.exists(os.path.join(out, "env.txt")):
    print("```")
    print(open(os.path.join(out, "env.txt")).read().rstrip())
    print("```\n")

verdicts = []
for variant in dict.fromkeys(r["variant"] for r in rows):
    vrows = [r for r in rows if r["variant"] == variant]
    targets = list(dict.fromkeys(r["target"] for r in vrows))
    rounds = list(dict.fromkeys(r["round"] for r in vrows))
    print(f"## Variant `{variant}`: {VARIANTS.get(variant, variant)}\n")
    print("| Round | Target | alg | req/s | p50 | p99 | proxy µs CPU/req | upstream µs CPU/req | errors | others |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in vrows:
        print(
            f"| {r['round']} | {r['target']} | {ALG.get(r['target'], '')} | {int(num(r, 'rps'))} | {int(num(r, 'p50_us'))} µs | "
            f"{int(num(r, 'p99_us'))} µs | {r['proxy_us_per_req']} | {r['upstream_us_per_req']} | {r['errors']} | {r['others_pct']} % |"
        )
    print()
    print("Medians over the rounds:\n")
    print("| Target | req/s | p50 | p99 | proxy µs CPU/req |")
    print("| --- | --- | --- | --- | --- |")
    for t in targets:
        tr = [r for r in vrows if r["target"] == t]
        med = lambda k: statistics.median(num(r, k) for r in tr)
        print(f"| {t} | {med('rps'):.0f} | {med('p50_us'):.0f} µs | {med('p99_us'):.0f} µs | {med('proxy_us_per_req'):.2f} |")
    print()
    pairs = [(g, t, counts) for g, t, counts in PAIRS if g in targets and t in targets]
    if not pairs:
        continue
    print("Gateway / HAProxy, each round against the HAProxy run of the same round (req/s: above 1 is the gateway faster; latency and CPU: below 1 is the gateway better):\n")
    print("| Gateway | Against | Round | req/s | p50 | p99 | CPU/req |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for gname, t, counts in pairs:
        ratios = {"rps": [], "p50_us": [], "p99_us": [], "proxy_us_per_req": []}
        quiet = {k: [] for k in ratios}
        quiet_rounds = []
        for rd in rounds:
            g = next((r for r in vrows if r["round"] == rd and r["target"] == gname), None)
            h = next((r for r in vrows if r["round"] == rd and r["target"] == t), None)
            if not g or not h:
                continue
            cells = []
            for k in ratios:
                x = num(g, k) / num(h, k) if num(h, k) else float("nan")
                ratios[k].append(x)
                cells.append(fmt_ratio(x))
            if num(g, "others_pct") <= QUIET_PCT and num(h, "others_pct") <= QUIET_PCT:
                quiet_rounds.append(rd)
                for k in ratios:
                    quiet[k].append(ratios[k][-1])
            print(f"| {gname} | {t} | {rd} | " + " | ".join(cells) + " |")
        med = {k: statistics.median(v) for k, v in ratios.items()}
        print(f"| {gname} | {t} | **median** | **{fmt_ratio(med['rps'])}** | **{fmt_ratio(med['p50_us'])}** | **{fmt_ratio(med['p99_us'])}** | **{fmt_ratio(med['proxy_us_per_req'])}** |")
        if quiet_rounds:
            qmed = {k: statistics.median(v) for k, v in quiet.items()}
            print(f"| {gname} | {t} | median of quiet rounds ({', '.join(quiet_rounds)}) | {fmt_ratio(qmed['rps'])} | {fmt_ratio(qmed['p50_us'])} | {fmt_ratio(qmed['p99_us'])} | {fmt_ratio(qmed['proxy_us_per_req'])} |")
        else:
            qmed = None
        if counts:
            verdicts.append((variant, t, med, qmed, quiet_rounds))
    print()

if verdicts:
    print("## Target: at least HAProxy's throughput and no worse p99 (medians of the per-round ratios)\n")
    print(f"Quiet rounds: both runs of the pair with `others` at most {QUIET_PCT:.0f} %.\n")
    print("| Variant | Against | req/s, all rounds | p99, all rounds | Met | req/s, quiet rounds | p99, quiet rounds | Met |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    met = lambda m: "**yes**" if m["rps"] >= 1.0 and m["p99_us"] <= 1.0 else "**no**"
    for variant, t, med, qmed, qr in verdicts:
        q = f"{qmed['rps']:.2f} | {qmed['p99_us']:.2f} | {met(qmed)}" if qmed else "- | - | -"
        print(f"| {variant} | {t} | {med['rps']:.2f} | {med['p99_us']:.2f} | {met(med)} | {q} |")
    print()

errors = sum(int(r["errors"]) for r in rows)
print(f"Errors (non-2xx and socket errors) over all runs: {errors}.")

# PACED_RATES=...: every token target at one offered rate (open loop, motorpool-loadgen).
paced_path = os.path.join(out, "paced.jsonl")
paced = [json.loads(line) for line in open(paced_path) if line.strip()] if os.path.exists(paced_path) else []
if paced:
    for r in paced:
        r["rate"], r["round"], r["target"] = r["label"].split(" ")
    print("\n## Paced: each target at one offered rate, a new user's token per request (open loop)\n")
    print("Latency runs from when each request fell due (no coordinated omission).\n")
    print("| Rate | Round | Target | req/s | p50 | p99 | max | errors | unsent |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in paced:
        print(f"| {r['rate']} | {r['round']} | {r['target']} | {r['rps']:.0f} | {r['p50_us']} µs | {r['p99_us']} µs | {r['max_us']} µs | {r['errors']} | {r['unsent']} |")
    print()
    print("Gateway / HAProxy at the same rate, medians of the per-round ratios (below 1: the gateway is better):\n")
    print("| Rate | Gateway | Against | p50 | p99 | rounds |")
    print("| --- | --- | --- | --- | --- | --- |")
    by = {(r["rate"], r["round"], r["target"]): r for r in paced}
    for rate in dict.fromkeys(r["rate"] for r in paced):
        for g, t, _ in PAIRS:
            pairs = [(by[(rate, rd, g)], by[(rate, rd, t)]) for (ra, rd, tg) in by if ra == rate and tg == g and (rate, rd, t) in by]
            if pairs:
                p50 = statistics.median(a["p50_us"] / b["p50_us"] for a, b in pairs)
                p99 = statistics.median(a["p99_us"] / b["p99_us"] for a, b in pairs)
                print(f"| {rate} | {g} | {t} | {fmt_ratio(p50)} | **{fmt_ratio(p99)}** | {len(pairs)} |")
    print(f"\nErrors over the paced runs: {sum(r['errors'] for r in paced)}; requests never sent: {sum(r['unsent'] for r in paced)}.")


def fenced(name, heading):
    """Prints the run's file `name` under `heading` as a code block, if it has anything."""
    path = os.path.join(out, name)
    if os.path.exists(path) and open(path).read().strip():
        print(f"\n{heading}\n")
        print("```")
        print(open(path).read().rstrip())
        print("```")


fenced("openssl-speed.txt", "## One signature verification on this machine (`openssl speed -seconds 1 ed25519 ecdsap256 rsa2048`, one core)")
checks = os.path.join(out, "checks.md")
if os.path.exists(checks):
    print()
    print(open(checks).read().replace("# Admission checks", "## Admission checks").rstrip())
table = os.path.join(out, "haproxy-table.txt")
if os.path.exists(table) and open(table).read().strip():
    print(f"\nHAProxy's rate table after the load: `{open(table).read().strip()}`")
fenced("gateway-batches.txt", "The gateway's batched signature checks over the whole run (`/metrics`):")
