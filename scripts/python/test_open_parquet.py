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

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
