"""Turns one bench/run's raw outputs into <out>.json, <out>.md and <out>.png.

Every figure is a ratio against a baseline measured in the same run where
one exists; the target for each is from issue 7.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

work, out = Path(sys.argv[1]), Path(sys.argv[2])


def load(name):
    return json.loads((work / f"{name}.json").read_text())


def p99_ms(ghz):
    return next(d["latency"] for d in ghz["latencyDistribution"] if d["percentage"] == 99) / 1e6


def ok_rps(ghz):
    ok = ghz["statusCodeDistribution"].get("OK", 0)
    return ok / (ghz["total"] / 1e9)


m = load("machine")
register, login, argon = load("register"), load("login"), load("argon2")
addurl, addurl_2k = load("addurl"), load("addurl_2000")
addurl_u, addurl_u_2k = load("addurl_users"), load("addurl_users_2000")
ls, ls_2k = load("liststatuses"), load("liststatuses_2000")
flush, prober, anchors = load("flush"), load("prober_nginx"), load("anchors")
flush_wide = load("flush_wide")
storage = load("storage")
st_old, st_new = storage["before_migration_18"], storage["after_migration_18"]
st_packed, st_ret = storage["after_migration_19_day_packed"], storage["retention"]
delivery = load("delivery")
watch = load("watch")
page = load("status_page")
p_un, p_rv = page["uncached"], page["revalidated"]
w_many, w_one = watch["many_watchers"], watch["baseline_one_watcher"]
d_lat, d_tp = delivery["latency"], delivery["throughput"]
asserted = load("prober_assertions")["assertions"]
plain_rate = sum(asserted["plain_probes_per_s"]) / len(asserted["plain_probes_per_s"])
rss, lateness = load("rss_100k"), load("lateness_10k")
rss_sqlite = load("rss_100k_sqlite")
soak_sqlite, soak_pg = load("soak_sqlite"), load("soak_postgres")
rollups, stats_day, stats_min = load("rollups"), load("stats_day_200"), load("stats_minute_200")
k6 = {n: load("k6_" + n)["metrics"] for n in
      ["seed_register", "seed_login", "seed_url", "v1_add_url", "v1_list_statuses"]}
# The seed README's k6 figure for /register (its author's laptop, passwords in plain text).
SEED_REGISTER_RPS, SEED_REGISTER_P95_MS = 1086.0, 21.0


def k6_row(name, script, grpc_what, grpc_rps):
    """A k6 JSON route beside the gRPC RPC it calls, same server and concurrency."""
    m = k6[script]
    failed = m["http_req_failed"]["value"]
    return (f"  {name} over JSON with k6 (p95 {m['http_req_duration']['p(95)']:.1f} ms, "
            f"{failed:.1%} failed)", m["http_reqs"]["rate"], "req/s",
            (grpc_what, grpc_rps), m["http_reqs"]["rate"] / grpc_rps, "reference: the gateway's cost", None)


def soak_growth(soak):
    """Most resident memory gained after the first two minutes of the window."""
    samples = soak["samples"]
    settled = [x["rss_mib"] for x in samples if x["at_s"] >= 120] or [x["rss_mib"] for x in samples[-1:]]
    return max(settled) - settled[0]


def soak_name(soak, what):
    minutes = soak["window_s"] / 60
    wal = max((x["sqlite_wal_mib"] for x in soak["samples"]), default=0)
    extra = f", WAL <= {wal:.0f} MiB" if soak["backend"] == "sqlite" else ""
    return (f"Soak RSS growth after minute 2, {what} ({soak['stored_probes_per_s']:,.0f} probes/s stored, "
            f"{minutes:.0f} min, RSS {soak['samples'][-1]['rss_mib']:.0f} MiB at the end{extra})")

rows = [
    # name, value, unit, baseline (label, value) or None, ratio or None, target text, met, score (>=1 met)
    (f"Prober probes/s (nginx, new connection each; demand {prober['demand_probes_per_s']:,.0f}/s)",
     prober["stored_probes_per_s"], "probes/s",
     ("blackbox_exporter, best of 2", anchors["blackbox_probes_per_s"]),
     prober["stored_probes_per_s"] / anchors["blackbox_probes_per_s"], ">= 4x blackbox_exporter", 4.0),
    ("  raw ceiling: wrk, Connection: close", anchors["wrk_close_per_s"], "req/s", None, None, "reference", None),
    ("Prober probes/s with 3 assertions per URL (status, latency, body_contains; nginx, 20,000 URLs/s of demand)",
     asserted["with_assertions_probes_per_s"], "probes/s",
     ("same without assertions, mean of before and after", plain_rate),
     asserted["ratio"], ">= 0.9x without assertions", 0.9),
    ("Flush rows/s, Redis -> Postgres", flush["flush_rows_per_s"], "rows/s",
     ("psql \\copy", flush["copy_rows_per_s"]), flush["flush_over_copy"], ">= 0.5x COPY", 0.5),
    ("Flush write with states, incidents and rollups, rows/s (1,000 URLs: 20 results per URL per batch)",
     flush["write_with_state_and_rollups_rows_per_s"],
     "rows/s", ("statuses only, same batches", flush["write_statuses_only_rows_per_s"]),
     flush["derived_over_plain"], ">= 0.9x statuses only", 0.9),
    ("  same, 20,000 URLs (1 result per URL per batch: the worst shape)",
     flush_wide["write_with_state_and_rollups_rows_per_s"],
     "rows/s", ("statuses only, same batches", flush_wide["write_statuses_only_rows_per_s"]),
     flush_wide["derived_over_plain"], ">= 0.9x statuses only", 0.9),
    (f"Raw status bytes on Postgres, a closed day (table, TOAST + indexes after VACUUM, {st_packed['statuses']:,} "
     "statuses, packed one row per URL)", st_packed["bytes_per_status"], "bytes/row",
     ("the layout before migration 18, same rows", st_old["bytes_per_row"]),
     st_old["bytes_per_row"] / st_packed["bytes_per_status"], "<= 64 bytes/row", st_old["bytes_per_row"] / 64),
    ("  same, the day being written", st_new["bytes_per_row"], "bytes/row",
     ("the layout before migration 18, same rows", st_old["bytes_per_row"]),
     st_old["bytes_per_row"] / st_new["bytes_per_row"], "reference", None),
    (f"One retention pass over {st_old['rows']:,} statuses: a partition drop", st_ret["after"]["seconds"], "s",
     ("DELETE by the probed_at index, 5,000 at a time (before migration 18)", st_ret["before"]["seconds"]),
     st_ret["before"]["seconds"] / st_ret["after"]["seconds"], "a partition drop, not deletes", None),
    ("  same, write-ahead log written", st_ret["after"]["wal_bytes"], "bytes",
     ("DELETE (before migration 18)", st_ret["before"]["wal_bytes"]),
     st_ret["before"]["wal_bytes"] / max(st_ret["after"]["wal_bytes"], 1), "reference", None),
    (f"  same as the 1,000-URL row, with {flush['windows']:,} recurring maintenance windows on the owner",
     flush["write_with_state_and_rollups_rows_per_s"] * flush["derived_with_windows_over_without"],
     "rows/s", ("no windows, same batches", flush["write_with_state_and_rollups_rows_per_s"]),
     flush["derived_with_windows_over_without"], ">= 0.95x without windows", 0.95),
    (f"Notification latency p99, flush commit to receiver 2xx, {d_lat['incidents_per_s']} incidents/s for "
     f"{d_lat['seconds']} s, default settings (a delivery pass every "
     f"{delivery['settings']['delivery_interval_ms'] / 1000:g} s; p50 {d_lat['ms']['p50']:,.0f} ms, "
     f"p95 {d_lat['ms']['p95']:,.0f} ms; {d_lat['delivered']:,} of {d_lat['incidents']:,} delivered)",
     d_lat["ms"]["p99"], "ms", None, None, "<= 2 s", -2000.0 if d_lat["delivered"] == d_lat["incidents"] else -0.0001),
    (f"Webhook sends/s through the outbox (Deliverer passes draining {d_tp['sends']:,} rows, "
     f"{d_tp['concurrency']} at once, local receiver)", d_tp["outbox_sends_per_s"], "sends/s",
     ("plain reqwest POSTs, same signed body and concurrency, no outbox", d_tp["plain_sends_per_s"]),
     d_tp["ratio"], "reference", None),
    ("  same, per core: sends per CPU-second of the sending runtime's threads (receiver and Postgres excluded)",
     d_tp["outbox_sends_per_cpu_s"], "sends/CPU-s",
     ("plain reqwest, same", d_tp["plain_sends_per_cpu_s"]), d_tp["ratio_per_cpu_s"], "reference", None),
    (f"WatchEvents probe-to-client latency p99, {w_many['watchers']:,} watchers on one instance, "
     f"{watch['rate_per_s']} results/s for {watch['seconds']} s ({w_many['events_delivered']:,} of "
     f"{w_many['events_expected']:,} delivered)",
     w_many["ms"]["p99"], "ms", ("one watcher, same results", w_one["ms"]["p99"]),
     None, "<= 500 ms (an absolute target: the baseline is shown, not compared)",
     -500.0 if w_many["events_delivered"] == w_many["events_expected"] else -0.0001),
    (f"Status page p99, {page['urls']} URLs x {page['days']} days, built from the database per request "
     f"(MONITOR_STATUS_PAGE_CACHE=0s; {page['page_bytes']:,} bytes)", p_un["page_ms"]["p99"], "ms",
     ("/healthz, same client", p_un["healthz_ms"]["p99"]), None, "<= 50 ms", -50.0),
    (f"  same, with If-None-Match (304), 16 clients, cache {p_rv['cache']}", p_rv["page_304_per_s"], "req/s",
     ("/healthz, 16 clients", p_rv["healthz_per_s"]), None, ">= 1,000 req/s", 1000.0),
    ("  same, whole page (200) again from the cache, 16 clients", page["repeated"]["page_200_per_s"], "req/s",
     ("/healthz, 16 clients", p_rv["healthz_per_s"]), page["repeated"]["ratio_over_healthz"], "reference", None),
    (f"GetUrlStats p99, 365 days at DAY, 200 rps (achieved {ok_rps(stats_day):,.0f} rps)", p99_ms(stats_day), "ms",
     None, None, "<= 20 ms at 200 rps", -20.0 if ok_rps(stats_day) >= 190 else -0.0001),
    (f"GetUrlStats p99, 48 hours at MINUTE (2,880 buckets), 200 rps (achieved {ok_rps(stats_min):,.0f} rps)",
     p99_ms(stats_min), "ms", None, None, "<= 50 ms at 200 rps", -50.0 if ok_rps(stats_min) >= 190 else -0.0001),
    (f"Rollup storage per URL-year (Postgres, {rollups['rows_per_url']:,.0f} rows per URL)",
     rollups["bytes_per_url_year"], "bytes", None, None, "<= 1 MB", -1_000_000.0),
    ("Register RPC/s", ok_rps(register), "RPC/s", ("raw argon2id hashes/s", argon["hashes_per_s"]),
     ok_rps(register) / argon["hashes_per_s"], ">= 0.8x raw argon2", 0.8),
    ("Login RPC/s", ok_rps(login), "RPC/s", ("raw argon2id hashes/s", argon["hashes_per_s"]),
     ok_rps(login) / argon["hashes_per_s"], ">= 0.8x raw argon2", 0.8),
    k6_row("POST /register (the seed's own load test)", "seed_register", "Register over gRPC", ok_rps(register)),
    ("  POST /register with k6 beside the seed's published figure (argon2id here, plain-text passwords there:"
     " compare the raw argon2id rate above)", k6["seed_register"]["http_reqs"]["rate"], "req/s",
     ("seed README: 1,086 req/s, p95 21 ms", SEED_REGISTER_RPS),
     k6["seed_register"]["http_reqs"]["rate"] / SEED_REGISTER_RPS, "reference", None),
    k6_row("POST /login", "seed_login", "Login over gRPC", ok_rps(login)),
    ("AddUrl RPC/s (max), one user", ok_rps(addurl), "RPC/s", None, None, ">= 5000", 5000.0),
    k6_row("POST /url (seed route)", "seed_url", "AddUrl over gRPC", ok_rps(addurl)),
    k6_row("POST /v1/urls", "v1_add_url", "AddUrl over gRPC", ok_rps(addurl)),
    (f"AddUrl p99 at 2000 rps, one user (achieved {ok_rps(addurl_2k):,.0f} rps)", p99_ms(addurl_2k), "ms", None, None,
     "<= 20 ms at 2000 rps", -20.0 if ok_rps(addurl_2k) >= 1900 else -0.0001),
    ("AddUrl RPC/s (max), 50 users", ok_rps(addurl_u), "RPC/s", None, None, ">= 5000", 5000.0),
    (f"AddUrl p99 at 2000 rps, 50 users (achieved {ok_rps(addurl_u_2k):,.0f} rps)", p99_ms(addurl_u_2k), "ms", None,
     None, "<= 20 ms at 2000 rps", -20.0 if ok_rps(addurl_u_2k) >= 1900 else -0.0001),
    ("ListStatuses (100 rows) RPC/s (max)", ok_rps(ls), "RPC/s", None, None, ">= 5000", 5000.0),
    k6_row("GET /v1/urls/{id}/statuses (100 rows)", "v1_list_statuses", "ListStatuses over gRPC", ok_rps(ls)),
    (f"ListStatuses p99 at 2000 rps (achieved {ok_rps(ls_2k):,.0f} rps)", p99_ms(ls_2k), "ms", None, None,
     "<= 20 ms at 2000 rps", -20.0 if ok_rps(ls_2k) >= 1900 else -0.0001),
    ("RSS per URL at 100k URLs (Postgres + Redis)", rss["rss_bytes_per_url"], "bytes", None, None, "<= 1024",
     -1024.0),
    ("RSS per URL at 100k URLs (SQLite, in-process buffer)", rss_sqlite["rss_bytes_per_url"], "bytes", None, None,
     "<= 1024", -1024.0),
    (soak_name(soak_sqlite, "SQLite + in-process"), soak_growth(soak_sqlite), "MiB", None, None, "< 20 MiB", -20.0),
    (soak_name(soak_pg, "Postgres + Redis"), soak_growth(soak_pg), "MiB", None, None, "< 20 MiB", -20.0),
    ("Schedule lateness p99, 10k URLs", lateness["lateness_ms"]["p99"], "ms", None, None, "<= 50 ms", -50.0),
]

table = []
for name, value, unit, base, ratio, target, goal in rows:
    if goal is None:
        met, score = None, None
    elif ratio is not None:
        met, score = ratio >= goal, ratio / goal
    elif goal < 0:
        met, score = value <= -goal, (-goal) / value if value > 0 else 10.0
    else:
        met, score = value >= goal, value / goal
    table.append({
        "measure": name.strip(), "value": round(value, 2), "unit": unit,
        "baseline": None if base is None else {"what": base[0], "value": round(base[1], 2)},
        "ratio": None if ratio is None else round(ratio, 3), "target": target, "met": met,
        "score": None if score is None else round(score, 3),
    })

errors = {k: v["errorDistribution"] for k, v in
          {"register": register, "login": login, "addurl": addurl, "addurl_2000": addurl_2k,
           "liststatuses": ls, "liststatuses_2000": ls_2k, "addurl_users": addurl_u,
           "addurl_users_2000": addurl_u_2k, "stats_day_200": stats_day,
           "stats_minute_200": stats_min}.items() if v["errorDistribution"]}
report = {"machine": m, "results": table, "rpc_errors": errors,
          "k6": k6, "raw": {n: load(n) for n in ["flush", "flush_wide", "storage", "delivery", "rollups", "prober_nginx", "prober_assertions", "anchors", "rss_100k",
                                  "rss_100k_sqlite", "lateness_10k", "argon2", "soak_sqlite", "soak_postgres"]}}
out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")

md = [f"Machine: {m['cpus']} × {m['cpu']}, {m['mem_gib']} GiB, Linux {m['kernel']}; commit {m['commit']}, {m['date']}.",
      "Command: `bash bench/run`.", "",
      "| measure | value | baseline (same run) | ratio | target | met |",
      "| --- | --- | --- | --- | --- | --- |"]
for r in table:
    base = "" if r["baseline"] is None else f"{r['baseline']['what']}: {r['baseline']['value']:,.0f}"
    ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}×"
    met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
    md.append(f"| {r['measure']} | {r['value']:,.2f} {r['unit']} | {base} | {ratio} | {r['target']} | {met} |")
if errors:
    md += ["", f"RPC errors during the load runs: `{json.dumps(errors)[:500]}`"]
out.with_suffix(".md").write_text("\n".join(md) + "\n")

scored = [r for r in table if r["score"] is not None]
fig, ax = plt.subplots(figsize=(9, 0.5 * len(scored) + 1.5))
names = [r["measure"] for r in scored][::-1]
scores = [min(r["score"], 10) for r in scored][::-1]
ax.barh(names, scores, color=["tab:green" if s >= 1 else "tab:red" for s in scores])
ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
ax.set_xscale("log")
ax.set_xlabel("measured / target (≥ 1 meets the target; log scale, capped at 10)")
ax.set_title(f"monitor bench, {m['date'][:10]}, {m['cpus']} vCPU")
fig.tight_layout()
fig.savefig(out.with_suffix(".png"), dpi=110)
print("\n".join(md))
