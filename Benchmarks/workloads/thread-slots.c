// thread-slots: every thread churns a small working set of its own, with sizes from a
// skewed distribution. Modelled on glibc's benchtests bench-malloc-thread (as mimalloc-bench
// runs it, "glibc-thread"): each thread keeps `slots` (1024) live blocks and replaces a
// random one at each step, the new size drawn from an inverse-square distribution over
// [min, max] (4 B to 32 KiB: mostly small, now and then a few KiB), so successive sizes
// hop between many size classes; no object leaves its thread. With threads=1 it is the
// single-threaded variant.
//
// Arguments: threads, slots (per thread), ops (replacements per thread), min, max, seed.
#include "common.h"

typedef struct {
    int index;
    uint64_t checksum;
    char pad[64];
} worker_t;

static long nthreads, nslots, nops, minsize, maxsize, seed;

/// A size in [minsize, maxsize] with density proportional to 1/size^2 (inverse transform:
/// size = 1 / (1/min - u * (1/min - 1/max)) for u uniform in [0, 1)).
static size_t skewed_size(rng_t *r) {
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
    uint64_t tag = ((uint64_t)w->index + 1) << 40, sum = 0;
    for (long i = 0; i < nslots; i++) {
        size[i] = (uint32_t)skewed_size(&rng);
        p[i] = xmalloc(size[i]);
        stamp(p[i], size[i], tag + (uint64_t)i);
    }
    uint64_t *tags = (uint64_t *)xmalloc(sizeof(uint64_t) * (size_t)nslots);
    for (long i = 0; i < nslots; i++) tags[i] = tag + (uint64_t)i;
    tag += (uint64_t)nslots;
    for (long k = 0; k < nops; k++) {
        long i = (long)rng_below(&rng, (uint64_t)nslots);
        check_stamp(p[i], size[i], tags[i], "thread-slots");
        sum = mix(sum, tags[i] ^ size[i]);
        free(p[i]);
        size[i] = (uint32_t)skewed_size(&rng);
        tags[i] = tag++;
        p[i] = xmalloc(size[i]);
        stamp(p[i], size[i], tags[i]);
    }
    for (long i = 0; i < nslots; i++) {
        check_stamp(p[i], size[i], tags[i], "thread-slots (final)");
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
        {"threads", 2, "worker threads"},
        {"slots", 1024, "live blocks per thread"},
        {"ops", 2000000, "replacements per thread"},
        {"min", 4, "smallest block size"},
        {"max", 32768, "largest block size"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("thread-slots", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    nslots = arg_get(args, nargs, "slots");
    nops = arg_get(args, nargs, "ops");
    minsize = arg_get(args, nargs, "min");
    maxsize = arg_get(args, nargs, "max");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || nslots < 1 || minsize < 1 || maxsize < minsize) die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;
    uint64_t checksum = 0;
    for (long t = 0; t < nthreads; t++) checksum = mix(checksum, ws[t].checksum);
    free(ws);
    printf("workload=thread-slots ops=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           nthreads * nops, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
