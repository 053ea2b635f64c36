// working-set-churn: a long-running mix that keeps a working set of live objects and
// churns it, while the working set grows and shrinks from phase to phase; reports peak RSS
// next to the peak of live bytes, so the allocator's memory overhead and how well it reuses
// (and returns) freed memory show. Modelled on alloc-test (the "allocation test" with a
// varying working set) and mstress (mimalloc-bench's memory stress with objects that move
// between threads): sizes follow a fixed skewed mix (70% 8-128 B, 25% 129 B-2 KiB,
// 4.8% 2-32 KiB, 0.2% 32-512 KiB), and now and then a thread swaps one of its objects with
// a slot of a shared exchange array, so objects end up freed by other threads.
//
// Arguments: threads, live (largest working set per thread, objects), steps (per thread),
// phases, xchg (1 in xchg steps swaps an object through the exchange array), seed.
#include "common.h"
#include <stdatomic.h>

typedef struct {
    void *p;
    uint32_t size;
    uint64_t tag;
} obj_t;

#define XSLOTS 1024
static _Atomic(obj_t *) exchange_slots[XSLOTS];
static long nthreads, nlive, nsteps, nphases, xchg, seed;

// Working-set targets per phase, as a fraction (per mille) of `live`.
static const int phase_target[] = {1000, 300, 800, 100, 600, 1000, 200, 500};

typedef struct {
    int index;
    uint64_t checksum;
    uint64_t peak_live_bytes;
    char pad[64];
} worker_t;

static uint32_t pick_size(rng_t *r) {
    uint64_t x = rng_below(r, 1000);
    if (x < 700) return (uint32_t)rng_range(r, 8, 128);
    if (x < 950) return (uint32_t)rng_range(r, 129, 2048);
    if (x < 998) return (uint32_t)rng_range(r, 2049, 32768);
    return (uint32_t)rng_range(r, 32769, 524288);
}

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    obj_t *live = (obj_t *)xmalloc(sizeof(obj_t) * (size_t)nlive);
    long n = 0;
    uint64_t tag = ((uint64_t)w->index + 1) << 40, sum = 0, bytes = 0, peak = 0;
    long per_phase = nsteps / nphases > 0 ? nsteps / nphases : 1;
    for (long step = 0; step < nsteps; step++) {
        long phase = step / per_phase;
        long target = nlive * phase_target[phase % (long)(sizeof phase_target / sizeof phase_target[0])] / 1000;
        if (target < 1) target = 1;
        uint64_t coin = rng_below(&rng, 4);
        if (n == 0 || (n < target && coin < 2)) {
            obj_t *o = &live[n++];
            o->size = pick_size(&rng);
            o->tag = tag++;
            o->p = xmalloc(o->size);
            fill(o->p, o->size, o->tag);
            bytes += o->size;
        } else {
            long i = (long)rng_below(&rng, (uint64_t)n);
            obj_t *o = &live[i];
            verify(o->p, o->size, o->tag, "working-set-churn");
            sum = mix(sum, o->tag ^ o->size);
            if (xchg > 0 && rng_below(&rng, (uint64_t)xchg) == 0) {
                // Swap this object with whatever another thread left in an exchange slot.
                obj_t *rec = (obj_t *)xmalloc(sizeof(obj_t));
                *rec = *o;
                bytes -= o->size;
                obj_t *got = atomic_exchange(&exchange_slots[rng_below(&rng, XSLOTS)], rec);
                if (got != NULL) {
                    *o = *got;
                    free(got);
                    verify(o->p, o->size, o->tag, "working-set-churn (received)");
                    bytes += o->size;
                } else {
                    *o = live[--n];
                }
            } else if (n > target && coin < 2) {
                bytes -= o->size;
                free(o->p);
                *o = live[--n];
            } else {
                bytes -= o->size;
                free(o->p);
                o->size = pick_size(&rng);
                o->tag = tag++;
                o->p = xmalloc(o->size);
                fill(o->p, o->size, o->tag);
                bytes += o->size;
            }
        }
        if (bytes > peak) peak = bytes;
    }
    for (long i = 0; i < n; i++) {
        verify(live[i].p, live[i].size, live[i].tag, "working-set-churn (final)");
        free(live[i].p);
    }
    free(live);
    w->checksum = sum;
    w->peak_live_bytes = peak;
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "threads"},
        {"live", 20000, "largest working set per thread (objects)"},
        {"steps", 2000000, "allocate/free/replace steps per thread"},
        {"phases", 8, "phases; the working-set target changes with each"},
        {"xchg", 16, "one step in xchg passes an object through the exchange (0: never)"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("working-set-churn", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    nlive = arg_get(args, nargs, "live");
    nsteps = arg_get(args, nargs, "steps");
    nphases = arg_get(args, nargs, "phases");
    xchg = arg_get(args, nargs, "xchg");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || nlive < 1 || nsteps < 0 || nphases < 1 || xchg < 0) die("bad arguments");

    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;

    uint64_t checksum = 0, peak_live = 0;
    for (long t = 0; t < nthreads; t++) {
        checksum = mix(checksum, ws[t].checksum);
        peak_live += ws[t].peak_live_bytes;
    }
    long left = 0;
    for (int i = 0; i < XSLOTS; i++) {
        obj_t *o = atomic_exchange(&exchange_slots[i], NULL);
        if (o == NULL) continue;
        verify(o->p, o->size, o->tag, "working-set-churn (exchange)");
        free(o->p);
        free(o);
        left++;
    }
    free(ws);
    printf("workload=working-set-churn threads=%ld seconds=%.3f exchanged_left=%ld "
           "peak_live_kib_upper=%llu checksum=%016llx maxrss_kib=%ld\n",
           nthreads, elapsed, left, (unsigned long long)(peak_live / 1024), (unsigned long long)checksum,
           maxrss_kib());
    return 0;
}
