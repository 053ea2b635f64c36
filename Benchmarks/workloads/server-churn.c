// server-churn: a server's memory over time. Worker threads serve "requests": each request
// allocates a handful of short-lived objects (16 B-64 KiB, skewed small; now and then a
// 256 KiB-1 MiB buffer), fills them, and adds one entry to the thread's long-lived cache
// (the working set), replacing a random old entry one time in four; one request in eight
// swaps an entry with a slot of a shared exchange array, so entries end up freed by other
// threads. The phases, separated by barriers:
//
//   grow    every thread serves requests until its cache holds its share of `peak` MiB
//   churn   `churn` more requests per thread, each adding one entry and evicting one
//   shrink  every thread expires its oldest entries (a TTL cache; `expire=1`: random ones)
//           until `keep` per mille of its peak is left, and the exchange array is emptied
//   idle    `idle` ms of sleep: no heap calls at all (the workers wait on a barrier)
//   drain   the survivors are verified and freed; the process exits
//
// It never calls malloc_trim: what the allocator gives back on its own is what the RSS
// curve shows (`gomalloc bench` samples /proc/PID/statm every 100 ms for this workload).
// The main thread prints one line per phase boundary:
//   phase=NAME mono_s=S rss_kib=N
// (S: CLOCK_MONOTONIC seconds, the clock the harness uses, so it can place the marker on
// its time axis; N: the process's RSS then, read with open/read, no heap call). The
// `idle-end` line is the RSS after the idle phase. Every object is filled with a pattern
// when allocated and verified before it is freed (CORRUPTION, exit 3, on a mismatch).
//
// Arguments: threads, peak (MiB, all threads), churn (requests per thread), keep (per
// mille of the peak kept after the shrink), expire (0: oldest first, 1: random), idle
// (ms), seed. With expire=1 the survivors are scattered over nearly every page, so no
// allocator can give much back; with the default the youngest entries survive, and what an
// allocator does with the pages the expired ones leave free is what the curve shows.
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct {
    void *p;
    uint32_t size;
    uint64_t tag;
    uint64_t born;  // the owner's request count when the entry entered its cache
} obj_t;

#define XSLOTS 256
#define TEMPS_MAX 16
static _Atomic(obj_t *) exchange_slots[XSLOTS];
static long nthreads, peak_mib, nchurn, keep, expire, idle_ms, seed;
static pthread_barrier_t barrier;

typedef struct {
    int index;
    obj_t *cache;
    long n, cap;
    uint64_t bytes, peak_bytes, tag, checksum;
    long requests, evicted, exchanged;
    char pad[64];
} worker_t;

/// Sizes of ordinary objects: 60% 16-256 B, 30% 257 B-4 KiB, 9% 4-16 KiB, 1% 16-64 KiB.
static uint32_t pick_small(rng_t *r) {
    uint64_t x = rng_below(r, 100);
    if (x < 60) return (uint32_t)rng_range(r, 16, 256);
    if (x < 90) return (uint32_t)rng_range(r, 257, 4096);
    if (x < 99) return (uint32_t)rng_range(r, 4097, 16384);
    return (uint32_t)rng_range(r, 16385, 65536);
}

static uint32_t pick_big(rng_t *r) { return (uint32_t)rng_range(r, 256 * 1024, 1024 * 1024); }

/// A cache entry: one in 400 is a big buffer.
static uint32_t pick_entry(rng_t *r) { return rng_below(r, 400) == 0 ? pick_big(r) : pick_small(r); }

static void new_obj(obj_t *o, uint32_t size, uint64_t tag) {
    o->size = size;
    o->tag = tag;
    o->p = xmalloc(size);
    fill(o->p, size, tag);
}

static void drop_obj(worker_t *w, obj_t *o, const char *what) {
    verify(o->p, o->size, o->tag, what);
    w->checksum = mix(w->checksum, o->tag ^ o->size);
    free(o->p);
}

/// Removes entry i from the cache (verified and freed).
static void evict(worker_t *w, long i) {
    w->bytes -= w->cache[i].size;
    drop_obj(w, &w->cache[i], "server-churn (evicted)");
    w->cache[i] = w->cache[--w->n];
    w->evicted++;
}

static void add_entry(worker_t *w, uint32_t size) {
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->cache = (obj_t *)realloc(w->cache, sizeof(obj_t) * (size_t)w->cap);
        if (w->cache == NULL) die("realloc of the cache array failed");
    }
    w->cache[w->n].born = (uint64_t)w->requests;
    new_obj(&w->cache[w->n++], size, w->tag++);
    w->bytes += size;
    if (w->bytes > w->peak_bytes) w->peak_bytes = w->bytes;
}

/// One request: short-lived objects, one new cache entry, maybe an eviction or a swap
/// through the exchange array. `steady`: always evict one entry (the churn phase).
static void serve(worker_t *w, rng_t *r, int steady) {
    obj_t temps[TEMPS_MAX];
    int k = (int)rng_range(r, 4, TEMPS_MAX);
    for (int i = 0; i < k; i++) new_obj(&temps[i], rng_below(r, 256) == 0 ? pick_big(r) : pick_small(r), w->tag++);
    if (w->n > 0 && (steady || rng_below(r, 4) == 0)) evict(w, (long)rng_below(r, (uint64_t)w->n));
    add_entry(w, pick_entry(r));
    if (rng_below(r, 8) == 0) {
        // Hand the newest entry to whichever thread finds it; take what another left here.
        obj_t *rec = (obj_t *)xmalloc(sizeof(obj_t));
        *rec = w->cache[--w->n];
        w->bytes -= rec->size;
        obj_t *got = atomic_exchange(&exchange_slots[rng_below(r, XSLOTS)], rec);
        if (got != NULL) {
            verify(got->p, got->size, got->tag, "server-churn (received)");
            got->born = (uint64_t)w->requests;
            w->cache[w->n++] = *got;
            w->bytes += got->size;
            free(got);
            w->exchanged++;
        }
    }
    for (int i = k - 1; i >= 0; i--) drop_obj(w, &temps[i], "server-churn (request)");
    w->requests++;
}

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    w->tag = ((uint64_t)w->index + 1) << 40;
    uint64_t share = (uint64_t)peak_mib * 1024 * 1024 / (uint64_t)nthreads;

    pthread_barrier_wait(&barrier);  // start
    while (w->bytes < share) serve(w, &rng, 0);
    pthread_barrier_wait(&barrier);  // grown
    for (long i = 0; i < nchurn; i++) serve(w, &rng, 1);
    pthread_barrier_wait(&barrier);  // churned
    uint64_t target = w->peak_bytes * (uint64_t)keep / 1000;
    if (expire == 0 && w->requests > 0) {
        // Expire the oldest: bytes per age bucket, the youngest buckets that fit in the
        // target survive, everything born before them goes.
        enum { BUCKETS = 4096 };
        static _Thread_local uint64_t bucket_bytes[BUCKETS];
        uint64_t span = ((uint64_t)w->requests + BUCKETS - 1) / BUCKETS;
        for (long i = 0; i < w->n; i++) bucket_bytes[w->cache[i].born / span] += w->cache[i].size;
        long cut = BUCKETS;
        uint64_t kept = 0;
        while (cut > 0 && kept + bucket_bytes[cut - 1] <= target) kept += bucket_bytes[--cut];
        uint64_t cutoff = (uint64_t)cut * span;
        for (long i = w->n - 1; i >= 0; i--)
            if (w->cache[i].born < cutoff) evict(w, i);
    }
    while (w->n > 0 && w->bytes > target) evict(w, (long)rng_below(&rng, (uint64_t)w->n));
    for (long s = w->index; s < XSLOTS; s += nthreads) {
        obj_t *o = atomic_exchange(&exchange_slots[s], NULL);
        if (o == NULL) continue;
        drop_obj(w, o, "server-churn (exchange)");
        free(o);
    }
    pthread_barrier_wait(&barrier);  // shrunk: idle starts
    pthread_barrier_wait(&barrier);  // idle ends
    for (long i = 0; i < w->n; i++) drop_obj(w, &w->cache[i], "server-churn (final)");
    free(w->cache);
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "worker threads"},
        {"peak", 96, "working set at its peak (MiB, all threads together)"},
        {"churn", 30000, "requests per thread at the peak, each evicting one entry"},
        {"keep", 70, "per mille of the peak working set left after the shrink"},
        {"expire", 0, "shrink: 0 expires the oldest entries first, 1 random ones"},
        {"idle", 2000, "idle time after the shrink (ms), no heap calls"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("server-churn", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    peak_mib = arg_get(args, nargs, "peak");
    nchurn = arg_get(args, nargs, "churn");
    keep = arg_get(args, nargs, "keep");
    expire = arg_get(args, nargs, "expire");
    idle_ms = arg_get(args, nargs, "idle");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || peak_mib < 1 || nchurn < 0 || keep < 0 || keep > 1000 || expire < 0 || expire > 1 || idle_ms < 0) die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    pthread_t *ts = (pthread_t *)xmalloc(sizeof(pthread_t) * (size_t)nthreads);
    if (ws == NULL) die("calloc failed");
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
    for (long t = 0; t < nthreads; t++) {
        ws[t].index = (int)t;
        if (pthread_create(&ts[t], NULL, worker, &ws[t]) != 0) die("pthread_create failed");
    }
    double t0 = now_seconds();
    marker("grow");
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
    marker("churn");
    pthread_barrier_wait(&barrier);
    marker("shrink");
    pthread_barrier_wait(&barrier);
    marker("idle");
    // Idle: nothing but sleeping (the workers wait on the barrier).
    struct timespec idle = {idle_ms / 1000, (idle_ms % 1000) * 1000000L};
    while (nanosleep(&idle, &idle) != 0)
        if (errno != EINTR) die("nanosleep failed");
    long idle_end_rss = marker("idle-end");
    pthread_barrier_wait(&barrier);
    for (long t = 0; t < nthreads; t++) pthread_join(ts[t], NULL);
    marker("exit");
    double elapsed = now_seconds() - t0;

    uint64_t checksum = 0, peak = 0;
    long requests = 0, evicted = 0, exchanged = 0;
    for (long t = 0; t < nthreads; t++) {
        checksum = mix(checksum, ws[t].checksum);
        peak += ws[t].peak_bytes;
        requests += ws[t].requests;
        evicted += ws[t].evicted;
        exchanged += ws[t].exchanged;
    }
    free(ts);
    free(ws);
    printf("workload=server-churn threads=%ld seconds=%.3f requests=%ld evicted=%ld exchanged=%ld "
           "peak_live_kib=%llu idle_end_rss_kib=%ld checksum=%016llx maxrss_kib=%ld\n",
           nthreads, elapsed, requests, evicted, exchanged, (unsigned long long)(peak / 1024), idle_end_rss,
           (unsigned long long)checksum, maxrss_kib());
    return 0;
}
