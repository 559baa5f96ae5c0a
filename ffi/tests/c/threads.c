/* Four threads ingest into and query one engine at once (SQL, trace summaries,
 * percentiles and the service graph in turn). Usage: threads STORE_DIR */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracelake.h"

#define THREADS 4
#define ROUNDS 20

static tl_engine *engine;

static void *work(void *arg) {
  int t = (int)(size_t)arg;
  char doc[512];
  for (int r = 0; r < ROUNDS; r++) {
    snprintf(doc, sizeof doc,
             "{\"trace_id\":\"1-5f5e1000-%024x\",\"id\":\"%016x\",\"name\":\"svc-%d\","
             "\"start_time\":1600000000,\"end_time\":1600000001}",
             (unsigned)(t * 1000 + r + 1), (unsigned)(t * 1000 + r + 1), t);
    tl_ingest_report *report = NULL;
    if (tl_ingest(engine, (const uint8_t *)doc, strlen(doc), &report) != TL_OK ||
        tl_ingest_report_accepted(report) != 1) {
      fprintf(stderr, "thread %d: ingest failed: %s\n", t, tl_last_error());
      exit(1);
    }
    tl_ingest_report_free(report);
    struct ArrowArrayStream stream;
    memset(&stream, 0, sizeof stream);
    tl_status status;
    switch (r % 4) {
      case 0:
        status = tl_sql(engine, "SELECT count(*) AS n FROM spans", &stream);
        break;
      case 1:
        status = tl_trace_summaries(engine, "service(\"svc-1\")", NAN, NAN, 0, &stream);
        break;
      case 2:
        status = tl_percentiles(engine, NULL, NAN, NAN, NULL, "service", NULL, 0, NULL, 1, &stream);
        break;
      default:
        status = tl_service_graph(engine, NULL, NULL, NAN, NAN, NULL, &stream);
    }
    if (status != TL_OK) {
      fprintf(stderr, "thread %d: query %d failed: %s\n", t, r % 4, tl_last_error());
      exit(1);
    }
    for (;;) {
      struct ArrowArray array;
      if (stream.get_next(&stream, &array) != 0) {
        fprintf(stderr, "thread %d: get_next failed\n", t);
        exit(1);
      }
      if (array.release == NULL) break;
      array.release(&array);
    }
    stream.release(&stream);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  const char *keys[] = {"maintenance_interval_ms", "durability"};
  const char *values[] = {"0", "none"};
  if (tl_engine_open(argv[1], keys, values, 2, &engine) != TL_OK) {
    fprintf(stderr, "open: %s\n", tl_last_error());
    return 1;
  }
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, work, (void *)(size_t)t);
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  struct ArrowArrayStream stream;
  memset(&stream, 0, sizeof stream);
  if (tl_sql(engine, "SELECT count(*) AS n FROM spans", &stream) != TL_OK) return 1;
  struct ArrowArray array;
  long long n = -1;
  while (stream.get_next(&stream, &array) == 0 && array.release != NULL) {
    if (array.length > 0) n = ((const long long *)array.children[0]->buffers[1])[0];
    array.release(&array);
  }
  stream.release(&stream);
  if (n != THREADS * ROUNDS) {
    fprintf(stderr, "expected %d rows, got %lld\n", THREADS * ROUNDS, n);
    return 1;
  }
  if (tl_engine_close(engine) != TL_OK) return 1;
  printf("ok %lld\n", n);
  return 0;
}
