"""Other engines read Tracelake's files: pyarrow and DuckDB open the store as a plain
Hive-partitioned Parquet dataset and agree with Tracelake's own SQL.

Run by scripts/test.sh with the `tracelake` binary path as argv[1]; prints
`N passed, N failed`."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow.dataset as ds

BIN = sys.argv[1]
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def tracelake(*args):
    out = subprocess.run([BIN, *args], check=True, capture_output=True, text=True).stdout
    return out


def sql(store, query):
    return [json.loads(line) for line in tracelake("sql", "--dir", store, "--json", query).splitlines()]


with tempfile.TemporaryDirectory() as tmp:
    gen = str(Path(tmp) / "traffic.jsonl")
    store = str(Path(tmp) / "store")
    tracelake("generate", "--count", "20000", "--seed", "3", "--out", gen)
    summary = json.loads(tracelake("ingest", "--dir", store, "--json", gen))
    check("ingest accepted everything", summary["accepted"] == 20000 and summary["rejected"] == 0, summary)

    ours = sql(store, "SELECT count(*) AS n, sum(CAST(fault AS INT)) AS faults FROM spans")[0]
    by_name = {r["name"]: r["n"] for r in sql(store, "SELECT name, count(*) AS n FROM spans GROUP BY name")}

    table = ds.dataset(f"{store}/spans", format="parquet", partitioning="hive").to_table()
    check("pyarrow reads every row", table.num_rows == ours["n"], (table.num_rows, ours))
    check("pyarrow sees the hive partition columns", {"date", "hour"} <= set(table.column_names), table.column_names)
    check(
        "pyarrow reads annotations as a list of structs",
        str(table.schema.field("annotations").type).startswith("list<item: struct<key: string"),
        table.schema.field("annotations").type,
    )

    con = duckdb.connect()
    files = f"read_parquet('{store}/spans/*/*/*.parquet', hive_partitioning = true)"
    n, distinct, faults = con.execute(f"SELECT count(*), count(DISTINCT (trace_id, id)), sum(fault::INT) FROM {files}").fetchone()
    check("duckdb count matches", n == ours["n"], (n, ours))
    check("one row per (trace_id, id)", distinct == n, (distinct, n))
    check("duckdb fault count matches", faults == ours["faults"], (faults, ours))
    theirs = dict(con.execute(f"SELECT name, count(*) FROM {files} GROUP BY name").fetchall())
    check("duckdb per-name counts match", theirs == by_name, (theirs, by_name))
    tenants = con.execute(
        f"SELECT count(*) FROM (SELECT unnest(annotations) AS a FROM {files}) WHERE a.key = 'tenant'"
    ).fetchone()[0]
    ours_tenants = sql(
        store,
        "SELECT count(*) AS n FROM (SELECT unnest(annotations) AS a FROM spans WHERE annotations IS NOT NULL) WHERE a.key = 'tenant'",
    )[0]["n"]
    check("annotations unnest the same in duckdb", tenants == ours_tenants, (tenants, ours_tenants))

    # Percentiles per service: ours (exact and from rollups) against DuckDB's exact
    # quantile_cont over the very same Parquet files.
    qs = [0.5, 0.9, 0.99]
    rows = con.execute(
        f"""SELECT name, coalesce(origin, ''), account_id, count(*),
                  quantile_cont((end_ns - start_ns) / 1e9, {qs})
           FROM {files} WHERE kind = 0 AND end_ns IS NOT NULL AND NOT in_progress
           GROUP BY ALL"""
    ).fetchall()
    duck = {}
    for name, kind, account, count, values in rows:
        key = (("service", name), ("type", kind)) + ((("account", account),) if account is not None else ())
        duck[key] = (count, values)

    def ours_percentiles(mode):
        out = json.loads(tracelake("percentiles", "--dir", store, "--by", "service", "--mode", mode, "--json"))
        groups = {}
        for g in out["groups"]:
            key = tuple((k, g[k]) for k in ("service", "type", "account") if k in g)
            groups[key] = (g["count"], [g["p50"], g["p90"], g["p99"]])
        return out, groups

    exact, ours_exact = ours_percentiles("exact")
    check("exact percentiles say they are exact", exact["mode"] == "exact" and exact["relative_error"] == 0, exact["mode"])
    missing = [k for k in duck if k not in ours_exact]
    check("every service duckdb sees has percentiles", not missing and len(duck) > 3, missing)
    worst = max(
        (abs(a - b) / max(abs(b), 1e-12) for k in duck if k in ours_exact for a, b in zip(ours_exact[k][1], duck[k][1])),
        default=1.0,
    )
    same_counts = all(ours_exact.get(k, (None,))[0] == duck[k][0] for k in duck)
    check("exact per-service counts equal duckdb's", same_counts)
    check("exact per-service quantiles equal duckdb's quantile_cont", worst < 1e-9, f"worst relative difference {worst}")

    fast, ours_fast = ours_percentiles("fast")
    check("fast percentiles come from rollups", fast["mode"] == "fast" and fast["partitions_from_rollups"] > 0, fast)
    # The stated bound: within 1% of the exact quantile_cont.
    worst = 0.0
    for k, (count, values) in duck.items():
        for got, exact_v in zip(ours_fast.get(k, (0, [None] * 3))[1], values):
            worst = max(worst, abs(got - exact_v) / max(exact_v, 1e-12) if got is not None else 1.0)
    check("fast per-service quantiles are within 1% of duckdb's quantile_cont", worst <= 0.01 + 1e-9, worst)
    check("fast per-service counts are exact", all(ours_fast.get(k, (None,))[0] == duck[k][0] for k in duck))
    print(f"     largest relative error of fast percentiles against duckdb's quantile_cont: {worst:.5f}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
