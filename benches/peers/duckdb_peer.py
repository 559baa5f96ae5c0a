"""DuckDB, the peer of the end-to-end harness: the same questions on the same Parquet files.

Called by `tracelake-harness` (see `scripts/bench.sh`), one process per workload:

    python duckdb_peer.py SPANS_DIR WORKLOAD --runs N [--evict] [--arg VALUE ...]

WORKLOAD is one of
  lookup      every row of one trace by id; one timed run per `--arg` (a 32-hex trace id)
  annotation  the newest 100 traces holding annotation `--arg KEY --arg VALUE`, with their
              first start and last end
  fullscan    count of traces whose root segment has `responsetime > 2 AND http.status = 500`
  percentiles exact p50/p90/p99 (`quantile_cont`) of segment response times per service
              (name, origin); the answer maps "name|origin" to [count, p50, p90, p99]

It prints one JSON object: {"times_ms": [...], "rows": <rows of the last answer>,
"answer": <a small check value>}. The harness takes medians and compares answers.

DuckDB reads the data files as they are: rows that a later document replaced (an
in-progress segment and its completion) are both there. The queries are written so that
this does not change their answers (whole traces, distinct trace ids).
"""

import argparse
import glob
import json
import os
import sys
import time

import duckdb


def evict(spans_dir):
    """Drops the files' pages from the OS page cache (a cold read)."""
    for path in glob.glob(os.path.join(spans_dir, "**", "*"), recursive=True):
        if os.path.isfile(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("spans_dir")
    p.add_argument("workload", choices=["lookup", "annotation", "fullscan", "percentiles"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--evict", action="store_true")
    p.add_argument("--arg", action="append", default=[])
    a = p.parse_args()

    con = duckdb.connect()
    files = os.path.join(a.spans_dir, "**", "*.parquet")
    con.execute(
        f"CREATE VIEW spans AS SELECT * FROM read_parquet('{files}', hive_partitioning = true)"
    )

    if a.workload == "lookup":
        runs = [([bytes.fromhex(t)],) for t in a.arg]
        sql = "SELECT * FROM spans WHERE trace_id = ?"
    elif a.workload == "annotation":
        key, value = a.arg
        runs = [([key, value],)] * a.runs
        sql = """
            SELECT trace_id, min(start_ns) AS first_start, max(end_ns) AS last_end
            FROM spans
            WHERE len(list_filter(annotations, lambda x: x.key = ? AND x.str = ?)) > 0
            GROUP BY trace_id ORDER BY trace_id DESC LIMIT 100"""
    elif a.workload == "percentiles":
        runs = [([],)] * a.runs
        sql = """
            SELECT name, coalesce(origin, ''), count(*),
                   quantile_cont((end_ns - start_ns) / 1e9, [0.5, 0.9, 0.99])
            FROM spans WHERE kind = 0 AND end_ns IS NOT NULL AND NOT in_progress
            GROUP BY ALL"""
    else:
        runs = [([],)] * a.runs
        sql = """
            SELECT count(DISTINCT trace_id) FROM spans
            WHERE kind = 0 AND parent_id IS NULL
              AND end_ns - start_ns > 2000000000 AND http_status = 500"""

    times, rows, answer = [], 0, None
    for (params,) in runs:
        if a.evict:
            evict(a.spans_dir)
        t0 = time.perf_counter()
        result = con.execute(sql, params).fetchall()
        times.append((time.perf_counter() - t0) * 1000.0)
        rows = len(result)
        if a.workload == "fullscan":
            answer = result[0][0]
        elif a.workload == "annotation":
            answer = result[0][0].hex() if result else None
        elif a.workload == "percentiles":
            answer = {f"{name}|{kind}": [n, *q] for name, kind, n, q in result}
    json.dump({"times_ms": times, "rows": rows, "answer": answer}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
