// random-replace: a large working set of objects whose sizes span many size classes, each
// step replacing one at random. Modelled on alloc-test (node-dot-cpp's allocator test, as
// mimalloc-bench runs it: alloc-test1 with one thread, alloc-testN with several): a big
// array of live objects per thread, random slots freed and reallocated, sizes drawn
// log-uniformly (as many 8-16 B objects as 4-8 KiB ones), the first bytes of each object
// written. The working set is much larger than the caches, so what a free or a malloc
// touches beyond the object itself — metadata lookups, bitmaps, lists — costs misses.
//
// Arguments: threads, slots (per thread), ops (replacements per thread), maxlog (sizes up
// to 2^maxlog), seed.
#include "common.h"

typedef struct {
    int index;
    uint64_t checksum;
    char pad[64];
} worker_t;

static long nthreads, nslots, nops, maxlog, seed;

/// A size in [8, 2^maxlog], log-uniform: a random exponent, then a random size within it.
static size_t loguniform_size(rng_t *r) {
    unsigned e = 3 + (unsigned)rng_below(r, (uint64_t)(maxlog - 3 + 1));
    size_t lo = (size_t)1 << e;
    return lo + (size_t)rng_below(r, lo);
}

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    void **p = (void **)xmalloc(sizeof(void *) * (size_t)nslots);
    uint32_t *size = (uint32_t *)xmalloc(sizeof(uint32_t) * (size_t)nslots);
    uint64_t *tags = (uint64_t *)xmalloc(sizeof(uint64_t) * (size_t)nslots);
    uint64_t tag = ((uint64_t)w->index + 1) << 40, sum = 0;
    for (long i = 0; i < nslots; i++) {
        size[i] = (uint32_t)loguniform_size(&rng);
        tags[i] = tag++;
        p[i] = xmalloc(size[i]);
        stamp(p[i], size[i], tags[i]);
    }
    for (long k = 0; k < nops; k++) {
        long i = (long)rng_below(&rng, (uint64_t)nslots);
        check_stamp(p[i], size[i], tags[i], "random-replace");
        sum = mix(sum, tags[i] ^ size[i]);
        free(p[i]);
        size[i] = (uint32_t)loguniform_size(&rng);
        tags[i] = tag++;
        p[i] = xmalloc(size[i]);
        stamp(p[i], size[i], tags[i]);
    }
    for (long i = 0; i < nslots; i++) {
        check_stamp(p[i], size[i], tags[i], "random-replace (final)");
        free(p[i]);
    }
    free(p);
    free(size);
    free(tags);
    w->checksum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 1, "worker threads, each with its own working set"},
        {"slots", 40000, "live objects per thread"},
        {"ops", 3000000, "replacements per thread"},
        {"maxlog", 12, "largest size is 2^(maxlog+1)-1 bytes"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("random-replace", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    nslots = arg_get(args, nargs, "slots");
    nops = arg_get(args, nargs, "ops");
    maxlog = arg_get(args, nargs, "maxlog");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || nslots < 1 || maxlog < 3 || maxlog > 20) die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;
    uint64_t checksum = 0;
    for (long t = 0; t < nthreads; t++) checksum = mix(checksum, ws[t].checksum);
    free(ws);
    printf("workload=random-replace ops=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           nthreads * nops, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
