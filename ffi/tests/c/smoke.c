/* Smoke test of the C ABI: open, ingest the SDK corpus, query, walk the stream,
 * error paths, close. Usage: smoke STORE_DIR CORPUS_FILE */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracelake.h"

#define CHECK(cond, ...)                        \
  do {                                          \
    if (!(cond)) {                              \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);             \
      fprintf(stderr, " (last error: %s)\n", tl_last_error()); \
      exit(1);                                  \
    }                                           \
  } while (0)

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    return NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* Runs a query whose first column is an int64 and returns its first value. */
static int64_t scalar(tl_engine *e, const char *sql) {
  struct ArrowArrayStream stream;
  memset(&stream, 0, sizeof stream);
  CHECK(tl_sql(e, sql, &stream) == TL_OK, "tl_sql %s", sql);
  struct ArrowSchema schema;
  CHECK(stream.get_schema(&stream, &schema) == 0, "get_schema");
  CHECK(schema.n_children == 1, "one column, got %lld", (long long)schema.n_children);
  CHECK(strcmp(schema.children[0]->format, "l") == 0, "int64 column, got %s",
        schema.children[0]->format);
  schema.release(&schema);
  int64_t value = -1;
  int batches = 0;
  for (;;) {
    struct ArrowArray array;
    CHECK(stream.get_next(&stream, &array) == 0, "get_next");
    if (array.release == NULL) break; /* end of stream */
    if (array.length > 0 && value < 0) {
      const int64_t *values = (const int64_t *)array.children[0]->buffers[1];
      value = values[array.children[0]->offset];
    }
    batches++;
    array.release(&array);
  }
  stream.release(&stream);
  CHECK(batches >= 1, "at least one batch");
  return value;
}

/* The value of `key` in an Arrow schema's metadata (int32 count, then int32-length
 * prefixed keys and values), copied into buf; 0 when absent. */
static int metadata(const struct ArrowSchema *schema, const char *key, char *buf, size_t cap) {
  const char *m = schema->metadata;
  if (m == NULL) return 0;
  int32_t n, len;
  memcpy(&n, m, 4);
  m += 4;
  for (int32_t i = 0; i < n; i++) {
    memcpy(&len, m, 4);
    int match = (size_t)len == strlen(key) && memcmp(m + 4, key, (size_t)len) == 0;
    m += 4 + len;
    memcpy(&len, m, 4);
    if (match) {
      size_t k = (size_t)len < cap - 1 ? (size_t)len : cap - 1;
      memcpy(buf, m + 4, k);
      buf[k] = 0;
      return 1;
    }
    m += 4 + len;
  }
  return 0;
}

/* The index of the column called `name`, or -1. */
static int column(const struct ArrowSchema *schema, const char *name) {
  for (int64_t i = 0; i < schema->n_children; i++)
    if (strcmp(schema->children[i]->name, name) == 0) return (int)i;
  return -1;
}

int main(int argc, char **argv) {
  CHECK(argc == 3, "usage: smoke STORE_DIR CORPUS_FILE");
  CHECK(tl_abi_version() == TL_ABI_VERSION, "ABI version");
  CHECK(strlen(tl_version()) > 0, "version");

  /* error paths: bad option, NULL arguments, NULL close */
  tl_engine *e = NULL;
  const char *bad_keys[] = {"no_such_option"};
  const char *bad_values[] = {"1"};
  CHECK(tl_engine_open(argv[1], bad_keys, bad_values, 1, &e) == TL_INVALID_ARGUMENT,
        "unknown option refused");
  CHECK(strstr(tl_last_error(), "no_such_option") != NULL, "the error names the option");
  CHECK(e == NULL, "no handle on failure");
  CHECK(tl_engine_open(NULL, NULL, NULL, 0, &e) == TL_INVALID_ARGUMENT, "NULL dir");
  CHECK(tl_engine_close(NULL) == TL_OK, "closing NULL is a no-op");
  CHECK(tl_sql(NULL, "SELECT 1", NULL) == TL_INVALID_ARGUMENT, "NULL engine");

  const char *keys[] = {"durability", "maintenance_interval_ms"};
  const char *values[] = {"sync", "0"};
  CHECK(tl_engine_open(argv[1], keys, values, 2, &e) == TL_OK, "open");
  CHECK(e != NULL, "handle");

  size_t len = 0;
  char *corpus = read_file(argv[2], &len);
  CHECK(corpus != NULL, "read %s", argv[2]);
  tl_ingest_report *report = NULL;
  CHECK(tl_ingest(e, (const uint8_t *)corpus, len, &report) == TL_OK, "ingest");
  size_t accepted = tl_ingest_report_accepted(report);
  CHECK(accepted > 1000, "accepted %zu", accepted);
  CHECK(tl_ingest_report_rejected(report) == 0, "no rejection");
  tl_ingest_report_free(report);
  free(corpus);

  /* a bad document among good ones: reported, the rest stored */
  const char *mixed =
      "{\"trace_id\":\"1-5f5e1000-000000000000000000000001\",\"id\":\"0000000000000001\","
      "\"name\":\"c\",\"start_time\":1600000000,\"end_time\":1600000001}\n"
      "{\"trace_id\":\"nope\",\"id\":\"0000000000000002\",\"name\":\"c\","
      "\"start_time\":1600000000,\"end_time\":1600000001}\n";
  CHECK(tl_ingest(e, (const uint8_t *)mixed, strlen(mixed), &report) == TL_OK, "ingest mixed");
  CHECK(tl_ingest_report_accepted(report) == 1, "one accepted");
  CHECK(tl_ingest_report_rejected(report) == 1, "one rejected");
  size_t index = 99;
  const char *code = NULL, *message = NULL;
  CHECK(tl_ingest_report_rejection(report, 0, &index, NULL, &code, &message) == TL_OK,
        "rejection");
  CHECK(index == 1 && code != NULL && message != NULL && strlen(message) > 0,
        "rejection %zu %s", index, code ? code : "(null)");
  CHECK(tl_ingest_report_rejection(report, 5, NULL, NULL, NULL, NULL) == TL_INVALID_ARGUMENT,
        "out of range");
  tl_ingest_report_free(report);

  int64_t rows = scalar(e, "SELECT count(*) AS n FROM spans");
  CHECK(rows > (int64_t)accepted, "rows %lld", (long long)rows);
  int64_t traces = scalar(e, "SELECT count(DISTINCT trace_id) AS n FROM spans");
  CHECK(traces > 0 && traces < rows, "traces %lld", (long long)traces);
  printf("rows %lld traces %lld\n", (long long)rows, (long long)traces);

  /* trace summaries of faulty traces: one row each, has_fault true */
  struct ArrowArrayStream sums;
  memset(&sums, 0, sizeof sums);
  CHECK(tl_trace_summaries(e, "fault", NAN, NAN, 1000, &sums) == TL_OK, "summaries");
  struct ArrowSchema sschema;
  CHECK(sums.get_schema(&sums, &sschema) == 0, "summaries schema");
  CHECK(sschema.n_children == 9 && strcmp(sschema.children[0]->name, "id") == 0,
        "summaries columns");
  sschema.release(&sschema);
  int64_t faulty = 0;
  char first_id[64] = {0};
  for (;;) {
    struct ArrowArray array;
    CHECK(sums.get_next(&sums, &array) == 0, "summaries get_next");
    if (array.release == NULL) break;
    if (faulty == 0 && array.length > 0) {
      /* column 0 is utf8: offsets in buffers[1], bytes in buffers[2] */
      const struct ArrowArray *ids = array.children[0];
      const int32_t *offsets = (const int32_t *)ids->buffers[1];
      const char *bytes = (const char *)ids->buffers[2];
      int32_t from = offsets[ids->offset], to = offsets[ids->offset + 1];
      CHECK(to - from > 0 && to - from < (int32_t)sizeof first_id, "id length");
      memcpy(first_id, bytes + from, (size_t)(to - from));
    }
    faulty += array.length;
    array.release(&array);
  }
  sums.release(&sums);
  CHECK(faulty > 0 && faulty < traces, "faulty traces %lld", (long long)faulty);
  CHECK(tl_trace_summaries(e, "fault", 1.0, NAN, 0, &sums) == TL_INVALID_ARGUMENT,
        "half a range refused");

  /* that trace, whole; an unknown id has no rows */
  const char *wanted[] = {first_id, "1-00000000-000000000000000000000000"};
  struct ArrowArrayStream docs;
  memset(&docs, 0, sizeof docs);
  CHECK(tl_get_traces(e, wanted, 2, &docs) == TL_OK, "get_traces %s", first_id);
  int64_t documents = 0;
  for (;;) {
    struct ArrowArray array;
    CHECK(docs.get_next(&docs, &array) == 0, "get_traces get_next");
    if (array.release == NULL) break;
    CHECK(array.n_children == 4, "four columns");
    documents += array.length;
    array.release(&array);
  }
  docs.release(&docs);
  CHECK(documents >= 1, "documents of %s: %lld", first_id, (long long)documents);

  /* p50 and p99 of response times per service, with histograms */
  const double qs[] = {0.5, 0.99};
  struct ArrowArrayStream pct;
  memset(&pct, 0, sizeof pct);
  CHECK(tl_percentiles(e, NULL, NAN, NAN, NULL, "service", qs, 2, "exact", 1, &pct) == TL_OK,
        "percentiles");
  struct ArrowSchema pschema;
  CHECK(pct.get_schema(&pct, &pschema) == 0, "percentiles schema");
  int count_col = column(&pschema, "count"), p50 = column(&pschema, "p50"),
      p99 = column(&pschema, "p99");
  CHECK(column(&pschema, "service") == 0 && count_col == 3 && p50 == 5 && p99 == 6 &&
            column(&pschema, "histogram") == 7,
        "percentile columns");
  CHECK(strcmp(pschema.children[count_col]->format, "L") == 0, "count is uint64");
  CHECK(strcmp(pschema.children[7]->format, "+l") == 0, "histogram is a list");
  char how[64] = {0};
  CHECK(metadata(&pschema, "mode", how, sizeof how) && strcmp(how, "exact") == 0,
        "answered exactly, got %s", how);
  CHECK(metadata(&pschema, "relative_error", how, sizeof how) && strcmp(how, "0") == 0,
        "no error bound, got %s", how);
  pschema.release(&pschema);
  uint64_t counted = 0;
  int64_t groups = 0;
  for (;;) {
    struct ArrowArray array;
    CHECK(pct.get_next(&pct, &array) == 0, "percentiles get_next");
    if (array.release == NULL) break;
    const uint64_t *counts = (const uint64_t *)array.children[count_col]->buffers[1];
    const double *lo = (const double *)array.children[p50]->buffers[1];
    const double *hi = (const double *)array.children[p99]->buffers[1];
    for (int64_t i = 0; i < array.length; i++) {
      counted += counts[i];
      CHECK(lo[i] >= 0 && lo[i] <= hi[i], "p50 %g <= p99 %g", lo[i], hi[i]);
    }
    groups += array.length;
    array.release(&array);
  }
  pct.release(&pct);
  CHECK(groups > 1 && counted > (uint64_t)groups, "%lld groups, %llu values",
        (long long)groups, (unsigned long long)counted);
  CHECK(tl_percentiles(e, NULL, NAN, NAN, NULL, "colour", NULL, 0, NULL, 0, &pct) ==
            TL_INVALID_ARGUMENT && strstr(tl_last_error(), "colour") != NULL,
        "a bad grouping is refused by name");
  CHECK(tl_percentiles(e, NULL, NAN, NAN, NULL, NULL, qs, (size_t)1 << 62, NULL, 0, &pct) ==
            TL_INVALID_ARGUMENT,
        "an absurd quantile count is refused");
  CHECK(tl_ingest(e, (const uint8_t *)"{}", SIZE_MAX, NULL) == TL_INVALID_ARGUMENT,
        "an absurd length is refused");
  CHECK(tl_percentiles(e, NULL, NAN, NAN, "weight", NULL, NULL, 0, NULL, 0, &pct) ==
            TL_INVALID_ARGUMENT && strstr(tl_last_error(), "weight") != NULL,
        "a bad metric is refused by name");

  /* the service graph: nodes with their edges */
  struct ArrowArrayStream graph;
  memset(&graph, 0, sizeof graph);
  CHECK(tl_service_graph(e, NULL, NULL, NAN, NAN, NULL, &graph) == TL_OK, "service graph");
  struct ArrowSchema gschema;
  CHECK(graph.get_schema(&graph, &gschema) == 0, "graph schema");
  int edges_col = column(&gschema, "edges"), name_col = column(&gschema, "name");
  CHECK(edges_col > 0 && name_col == 1 && column(&gschema, "service") > edges_col,
        "graph columns");
  CHECK(strcmp(gschema.children[edges_col]->format, "+l") == 0, "edges is a list");
  gschema.release(&gschema);
  int64_t nodes = 0, edges = 0;
  for (;;) {
    struct ArrowArray array;
    CHECK(graph.get_next(&graph, &array) == 0, "graph get_next");
    if (array.release == NULL) break;
    const int32_t *offsets = (const int32_t *)array.children[edges_col]->buffers[1];
    edges += offsets[array.length] - offsets[0];
    nodes += array.length;
    array.release(&array);
  }
  graph.release(&graph);
  CHECK(nodes > 2 && edges > 0, "%lld nodes, %lld edges", (long long)nodes,
        (long long)edges);
  CHECK(tl_service_graph(e, "no-such-group", NULL, NAN, NAN, NULL, &graph) ==
            TL_INVALID_ARGUMENT,
        "an unknown group is refused");
  CHECK(tl_trace_graph(e, wanted, 1, &graph) == TL_OK, "trace graph of %s", first_id);
  int64_t trace_nodes = 0;
  for (;;) {
    struct ArrowArray array;
    CHECK(graph.get_next(&graph, &array) == 0, "trace graph get_next");
    if (array.release == NULL) break;
    trace_nodes += array.length;
    array.release(&array);
  }
  graph.release(&graph);
  CHECK(trace_nodes >= 2 && trace_nodes <= nodes, "trace graph nodes %lld",
        (long long)trace_nodes);
  printf("percentile groups %lld, graph nodes %lld edges %lld\n", (long long)groups,
         (long long)nodes, (long long)edges);

  /* a bad query: an error with a message, the stream untouched */
  struct ArrowArrayStream stream;
  memset(&stream, 0, sizeof stream);
  CHECK(tl_sql(e, "SELEC nonsense", &stream) == TL_INVALID_ARGUMENT, "bad SQL refused");
  CHECK(strlen(tl_last_error()) > 0, "a message");
  CHECK(stream.release == NULL, "no stream on failure");

  size_t merges = 0, dropped = 0;
  CHECK(tl_compact(e, &merges) == TL_OK, "compact");
  CHECK(tl_apply_retention(e, 1, &dropped) == TL_OK, "retention dry run");
  CHECK(scalar(e, "SELECT count(*) AS n FROM spans") == rows, "same rows after compaction");
  /* a stream outlives its engine: opened before the close, read after it */
  struct ArrowArrayStream late;
  memset(&late, 0, sizeof late);
  CHECK(tl_trace_summaries(e, NULL, NAN, NAN, 5, &late) == TL_OK, "summaries before close");
  CHECK(tl_engine_close(e) == TL_OK, "close");
  int64_t late_rows = 0;
  for (;;) {
    struct ArrowArray array;
    CHECK(late.get_next(&late, &array) == 0, "get_next after close");
    if (array.release == NULL) break;
    late_rows += array.length;
    array.release(&array);
  }
  late.release(&late);
  CHECK(late_rows == 5, "five summaries after close, got %lld", (long long)late_rows);
  printf("ok\n");
  return 0;
}
