// cross-thread-free: threads replace random-sized objects in slot arrays that move from
// thread to thread, so nearly every object is freed by a different thread than the one
// that allocated it. Modelled on larson (Larson & Krishnan's server simulation, as run by
// mimalloc-bench): each thread owns an array of slots and repeatedly frees a random slot's
// object and allocates a new one of random size in [min, max]. Larson passes arrays on by
// letting a thread exit and starting a successor; here the threads live for the whole run
// and the arrays rotate between them after every round, which gives the same cross-thread
// frees without measuring pthread_create.
//
// Arguments: threads, slots (per array), rounds, ops (per thread per round), min, max, seed.
#include "common.h"

typedef struct {
    void *p;
    uint32_t size;
    uint64_t tag;
} slot_t;

static long nthreads, nslots, nrounds, nops, minsize, maxsize, seed;
static slot_t **arrays;
static pthread_barrier_t barrier;

typedef struct {
    int index;
    uint64_t checksum;
    char pad[64];
} worker_t;

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    uint64_t next_tag = ((uint64_t)w->index + 1) << 40;
    uint64_t sum = 0;
    for (long r = 0; r < nrounds; r++) {
        pthread_barrier_wait(&barrier);
        slot_t *a = arrays[(w->index + r) % nthreads];
        for (long k = 0; k < nops; k++) {
            slot_t *s = &a[rng_below(&rng, (uint64_t)nslots)];
            verify(s->p, s->size, s->tag, "cross-thread-free");
            sum = mix(sum, s->tag ^ s->size);
            free(s->p);
            s->size = (uint32_t)rng_range(&rng, (uint64_t)minsize, (uint64_t)maxsize);
            s->tag = next_tag++;
            s->p = xmalloc(s->size);
            fill(s->p, s->size, s->tag);
        }
    }
    w->checksum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "worker threads"},
        {"slots", 1000, "live objects per thread (array length)"},
        {"rounds", 20, "rounds; arrays move to the next thread after each"},
        {"ops", 20000, "free+malloc replacements per thread per round"},
        {"min", 8, "smallest object size"},
        {"max", 1000, "largest object size"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("cross-thread-free", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    nslots = arg_get(args, nargs, "slots");
    nrounds = arg_get(args, nargs, "rounds");
    nops = arg_get(args, nargs, "ops");
    minsize = arg_get(args, nargs, "min");
    maxsize = arg_get(args, nargs, "max");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || nslots < 1 || minsize < 1 || maxsize < minsize) die("bad arguments");

    // The main thread allocates the initial objects: the first frees are cross-thread too.
    rng_t rng = rng_seeded((uint64_t)seed, 0);
    arrays = (slot_t **)xmalloc(sizeof(slot_t *) * (size_t)nthreads);
    uint64_t tag = 1;
    for (long t = 0; t < nthreads; t++) {
        arrays[t] = (slot_t *)xmalloc(sizeof(slot_t) * (size_t)nslots);
        for (long i = 0; i < nslots; i++) {
            slot_t *s = &arrays[t][i];
            s->size = (uint32_t)rng_range(&rng, (uint64_t)minsize, (uint64_t)maxsize);
            s->tag = tag++;
            s->p = xmalloc(s->size);
            fill(s->p, s->size, s->tag);
        }
    }

    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;

    uint64_t checksum = 0;
    for (long t = 0; t < nthreads; t++) checksum = mix(checksum, ws[t].checksum);
    for (long t = 0; t < nthreads; t++) {
        for (long i = 0; i < nslots; i++) {
            slot_t *s = &arrays[t][i];
            verify(s->p, s->size, s->tag, "cross-thread-free (final)");
            free(s->p);
        }
        free(arrays[t]);
    }
    free(arrays);
    free(ws);
    pthread_barrier_destroy(&barrier);
    printf("workload=cross-thread-free ops=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           nthreads * nrounds * nops, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
