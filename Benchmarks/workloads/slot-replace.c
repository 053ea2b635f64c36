// slot-replace: every thread keeps a working set of its own and replaces a random object of
// it at each step, the new size drawn from one of two distributions; no object leaves its
// thread. Two benchmarks of the field have this shape:
//   dist=0  glibc's benchtests bench-malloc-thread (mimalloc-bench's glibc-thread): 1024
//           blocks per thread, sizes from an inverse-square distribution over [min, max]
//           (4 B to 32 KiB: mostly small, now and then a few KiB), so successive sizes hop
//           between many size classes;
//   dist=1  alloc-test (node-dot-cpp's allocator test; alloc-test1 / alloc-testN): a large
//           working set (tens of thousands of objects, some tens of MiB) with sizes
//           log-uniform over [8, 2^(maxlog+1)) — as many 8-16 B objects as 4-8 KiB ones —
//           much larger than the caches, so what a free or a malloc touches beyond the
//           object itself (metadata lookups, bitmaps, lists) costs misses.
// Each object's head and tail are stamped and checked before it is freed.
//
// Arguments: threads, slots (per thread), ops (replacements per thread), dist, min, max,
// maxlog, seed.
#include "common.h"

typedef struct {
    int index;
    uint64_t checksum;
    char pad[64];
} worker_t;

static long nthreads, nslots, nops, dist, minsize, maxsize, maxlog, seed;

/// dist=0: density proportional to 1/size^2 on [minsize, maxsize] (inverse transform:
/// size = 1 / (1/min - u * (1/min - 1/max)) for u uniform in [0, 1)).
/// dist=1: a random exponent in [3, maxlog], then a random size within that octave.
static size_t next_size(rng_t *r) {
    if (dist == 1) {
        unsigned e = 3 + (unsigned)rng_below(r, (uint64_t)(maxlog - 3 + 1));
        size_t lo = (size_t)1 << e;
        return lo + (size_t)rng_below(r, lo);
    }
    double u = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    double inv = 1.0 / (double)minsize - u * (1.0 / (double)minsize - 1.0 / (double)maxsize);
    size_t n = (size_t)(1.0 / inv);
    return n < (size_t)minsize ? (size_t)minsize : n > (size_t)maxsize ? (size_t)maxsize : n;
}

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    void **p = (void **)xmalloc(sizeof(void *) * (size_t)nslots);
    uint32_t *size = (uint32_t *)xmalloc(sizeof(uint32_t) * (size_t)nslots);
    uint64_t *tags = (uint64_t *)xmalloc(sizeof(uint64_t) * (size_t)nslots);
    uint64_t tag = ((uint64_t)w->index + 1) << 40, sum = 0;
    for (long i = 0; i < nslots; i++) {
        size[i] = (uint32_t)next_size(&rng);
        tags[i] = tag++;
        p[i] = xmalloc(size[i]);
        stamp(p[i], size[i], tags[i]);
    }
    for (long k = 0; k < nops; k++) {
        long i = (long)rng_below(&rng, (uint64_t)nslots);
        check_stamp(p[i], size[i], tags[i], "slot-replace");
        sum = mix(sum, tags[i] ^ size[i]);
        free(p[i]);
        size[i] = (uint32_t)next_size(&rng);
        tags[i] = tag++;
        p[i] = xmalloc(size[i]);
        stamp(p[i], size[i], tags[i]);
    }
    for (long i = 0; i < nslots; i++) {
        check_stamp(p[i], size[i], tags[i], "slot-replace (final)");
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
        {"threads", 2, "worker threads, each with its own working set"},
        {"slots", 1024, "live objects per thread"},
        {"ops", 2000000, "replacements per thread"},
        {"dist", 0, "0: inverse-square over [min, max]; 1: log-uniform up to 2^(maxlog+1)"},
        {"min", 4, "smallest size (dist=0)"},
        {"max", 32768, "largest size (dist=0)"},
        {"maxlog", 12, "largest octave (dist=1)"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("slot-replace", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    nslots = arg_get(args, nargs, "slots");
    nops = arg_get(args, nargs, "ops");
    dist = arg_get(args, nargs, "dist");
    minsize = arg_get(args, nargs, "min");
    maxsize = arg_get(args, nargs, "max");
    maxlog = arg_get(args, nargs, "maxlog");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || nslots < 1 || (dist != 0 && dist != 1) || minsize < 1 || maxsize < minsize || maxlog < 3
        || maxlog > 20)
        die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;
    uint64_t checksum = 0;
    for (long t = 0; t < nthreads; t++) checksum = mix(checksum, ws[t].checksum);
    free(ws);
    printf("workload=slot-replace ops=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           nthreads * nops, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
