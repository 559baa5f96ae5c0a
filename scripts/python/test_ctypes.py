"""The C ABI from Python through ctypes, with results read by pyarrow.

Usage: test_ctypes.py LIBTRACELAKE_C TRACELAKE_BIN SHARED_DIR

Ingests the SDK corpus through libtracelake_c, reads trace summaries and SQL results
as pyarrow Tables (zero-copy through the Arrow C stream interface), and compares the
counts with what the Rust API answers for the same store (through the `tracelake` CLI,
after the library closed it).
"""

import ctypes
import json
import os
import subprocess
import sys
import tempfile

import pyarrow as pa

TL_OK, TL_INVALID_ARGUMENT = 0, 1


class ArrowArrayStream(ctypes.Structure):
    """The canonical struct: five pointers. pyarrow imports it by address."""

    _fields_ = [
        ("get_schema", ctypes.c_void_p),
        ("get_next", ctypes.c_void_p),
        ("get_last_error", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


def load(path):
    lib = ctypes.CDLL(path)
    lib.tl_abi_version.restype = ctypes.c_uint32
    lib.tl_version.restype = ctypes.c_char_p
    lib.tl_last_error.restype = ctypes.c_char_p
    lib.tl_engine_open.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.tl_engine_close.argtypes = [ctypes.c_void_p]
    lib.tl_ingest.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.tl_ingest_report_accepted.argtypes = [ctypes.c_void_p]
    lib.tl_ingest_report_accepted.restype = ctypes.c_size_t
    lib.tl_ingest_report_rejected.argtypes = [ctypes.c_void_p]
    lib.tl_ingest_report_rejected.restype = ctypes.c_size_t
    lib.tl_ingest_report_free.argtypes = [ctypes.c_void_p]
    lib.tl_sql.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ArrowArrayStream)]
    lib.tl_trace_summaries.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_size_t,
        ctypes.POINTER(ArrowArrayStream),
    ]
    lib.tl_percentiles.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_double),
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.POINTER(ArrowArrayStream),
    ]
    lib.tl_service_graph.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_double,
        ctypes.c_double,
        ctypes.c_char_p,
        ctypes.POINTER(ArrowArrayStream),
    ]
    return lib


def check(lib, status, what):
    if status != TL_OK:
        raise AssertionError(f"{what}: status {status}: {lib.tl_last_error().decode()}")


def table(lib, status_of_call, what):
    stream = ArrowArrayStream()
    check(lib, status_of_call(ctypes.byref(stream)), what)
    reader = pa.RecordBatchReader._import_from_c(ctypes.addressof(stream))
    return reader.read_all()


def main():
    lib_path, tracelake, shared = sys.argv[1:4]
    lib = load(lib_path)
    assert lib.tl_abi_version() == 1, lib.tl_abi_version()
    corpus = open(os.path.join(shared, "fixtures/sdk-python/datagrams.jsonl"), "rb").read()
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        engine = ctypes.c_void_p()
        keys = (ctypes.c_char_p * 1)(b"maintenance_interval_ms")
        values = (ctypes.c_char_p * 1)(b"0")
        check(lib, lib.tl_engine_open(store.encode(), keys, values, 1, ctypes.byref(engine)), "open")

        bad = (ctypes.c_char_p * 1)(b"colour")
        other = ctypes.c_void_p()
        status = lib.tl_engine_open(store.encode(), bad, values, 1, ctypes.byref(other))
        assert status == TL_INVALID_ARGUMENT, status
        assert b"colour" in lib.tl_last_error()

        report = ctypes.c_void_p()
        check(lib, lib.tl_ingest(engine, corpus, len(corpus), ctypes.byref(report)), "ingest")
        accepted = lib.tl_ingest_report_accepted(report)
        assert accepted > 1000 and lib.tl_ingest_report_rejected(report) == 0, accepted
        lib.tl_ingest_report_free(report)

        counts = table(
            lib,
            lambda out: lib.tl_sql(
                engine,
                b"SELECT count(*) AS n, count(DISTINCT trace_id) AS t FROM spans",
                out,
            ),
            "sql",
        )
        assert isinstance(counts, pa.Table)
        rows, traces = counts.column("n")[0].as_py(), counts.column("t")[0].as_py()

        nan = float("nan")
        summaries = table(
            lib,
            lambda out: lib.tl_trace_summaries(engine, b"fault", nan, nan, 1000, out),
            "summaries",
        )
        assert summaries.column_names[:2] == ["id", "start_time"], summaries.column_names
        assert all(summaries.column("has_fault").to_pylist())
        first = json.loads(summaries.column("summary")[0].as_py())
        assert first["Id"] == summaries.column("id")[0].as_py()

        qs = (ctypes.c_double * 2)(0.5, 0.99)
        pct = table(
            lib,
            lambda out: lib.tl_percentiles(
                engine, None, nan, nan, None, b"service", qs, 2, b"exact", 0, out
            ),
            "percentiles",
        )
        assert pct.column_names == ["service", "type", "account", "count", "sum", "p50", "p99"], (
            pct.column_names
        )
        assert pct.schema.metadata[b"mode"] == b"exact", pct.schema.metadata
        graph = table(
            lib,
            lambda out: lib.tl_service_graph(engine, None, None, nan, nan, None, out),
            "service graph",
        )
        assert graph.num_rows > 2 and "edges" in graph.column_names, graph.schema
        edges = graph.column("edges").combine_chunks().flatten()
        assert len(edges) > 0 and edges.type.get_field_index("total_count") >= 0, edges.type

        stream = ArrowArrayStream()
        status = lib.tl_sql(engine, b"SELEC nonsense", ctypes.byref(stream))
        assert status == TL_INVALID_ARGUMENT and stream.release is None, status
        check(lib, lib.tl_engine_close(engine), "close")

        # The Rust API on the same store (the CLI is a thin layer over it).
        def cli(*args):
            out = subprocess.run(
                [tracelake, *args, "--dir", store, "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            return [json.loads(line) for line in out.splitlines() if line.strip()]

        rust = cli("sql", "SELECT count(*) AS n, count(DISTINCT trace_id) AS t FROM spans")[0]
        assert (rust["n"], rust["t"]) == (rows, traces), (rust, rows, traces)
        rust_faults = cli("query", "fault", "--limit", "1000")
        ids = [s["Id"] for page in rust_faults for s in page["TraceSummaries"]]
        assert sorted(ids) == sorted(summaries.column("id").to_pylist()), (
            len(ids),
            summaries.num_rows,
        )
        rust_pct = cli("percentiles", "--by", "service", "--q", "50,99", "--mode", "exact")[0]
        key = lambda g: (g["service"], g["type"], g.get("account"))  # noqa: E731
        want = {key(g): (g["count"], g["p50"], g["p99"]) for g in rust_pct["groups"]}
        got = {key(g): (g["count"], g["p50"], g["p99"]) for g in pct.to_pylist()}
        assert got == want, (got, want)
        rust_graph = cli("graph")[0]
        want = sorted(
            (s["Name"], s["Type"], (s.get("SummaryStatistics") or {}).get("TotalCount"))
            for s in rust_graph["Services"]
        )
        got = sorted(zip(graph.column("name").to_pylist(), graph.column("type").to_pylist(),
                         graph.column("total_count").to_pylist()))
        assert got == want, (got, want)
        print(
            f"ok: {accepted} documents, {rows} rows, {traces} traces, "
            f"{summaries.num_rows} faulty traces, {pct.num_rows} percentile groups, "
            f"{graph.num_rows} graph nodes with {len(edges)} edges, same as the Rust API"
        )


if __name__ == "__main__":
    main()
