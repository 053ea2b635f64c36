// thread-handoff: a server simulation in which every thread is short-lived. Modelled on
// larson (Larson & Krishnan, "Memory allocation for long-running server applications",
// 1998), as mimalloc-bench runs it: a thread owns an array of slots holding objects of
// random size in [min, max]; it replaces objects at random slots (free, then malloc), and
// after a number of replacements it starts a successor thread, hands it the array, and
// exits. So the objects a thread frees were mostly allocated by its predecessors — on other
// CPUs, by threads that no longer exist — and threads come and go all the time.
// `chains` such hand-off chains run at once; each runs `generations` threads in turn.
// Unlike larson (which counts operations in a fixed time) the work is fixed and the time
// is measured, like the other workloads here.
//
// Arguments: chains, slots (per array), generations (threads per chain), ops (replacements
// per thread), min, max, seed.
#include "common.h"

typedef struct {
    void *p;
    uint32_t size;
    uint64_t tag;
} slot_t;

typedef struct {
    slot_t *slots;
    rng_t rng;
    uint64_t next_tag;
    uint64_t checksum;
    long generation;
} chain_t;

static long nchains, nslots, ngenerations, nops, minsize, maxsize, seed;

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static long chains_done;

static void *generation(void *arg) {
    chain_t *c = (chain_t *)arg;
    uint64_t sum = c->checksum;
    for (long k = 0; k < nops; k++) {
        slot_t *s = &c->slots[rng_below(&c->rng, (uint64_t)nslots)];
        check_stamp(s->p, s->size, s->tag, "thread-handoff");
        sum = mix(sum, s->tag ^ s->size);
        free(s->p);
        s->size = (uint32_t)rng_range(&c->rng, (uint64_t)minsize, (uint64_t)maxsize);
        s->tag = c->next_tag++;
        s->p = xmalloc(s->size);
        stamp(s->p, s->size, s->tag);
    }
    c->checksum = sum;
    if (++c->generation < ngenerations) {
        // Hand the array to a successor and leave.
        pthread_t next;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&next, &attr, generation, c) != 0) die("pthread_create failed");
        pthread_attr_destroy(&attr);
    } else {
        pthread_mutex_lock(&done_lock);
        chains_done++;
        pthread_cond_signal(&done_cond);
        pthread_mutex_unlock(&done_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "hand-off chains running at once"},
        {"slots", 1000, "live objects per chain (array length)"},
        {"generations", 400, "threads per chain, one after the other"},
        {"ops", 2000, "free+malloc replacements per thread"},
        {"min", 8, "smallest object size"},
        {"max", 1000, "largest object size"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("thread-handoff", argc, argv, args, nargs);
    nchains = arg_get(args, nargs, "threads");
    nslots = arg_get(args, nargs, "slots");
    ngenerations = arg_get(args, nargs, "generations");
    nops = arg_get(args, nargs, "ops");
    minsize = arg_get(args, nargs, "min");
    maxsize = arg_get(args, nargs, "max");
    seed = arg_get(args, nargs, "seed");
    if (nchains < 1 || nslots < 1 || ngenerations < 1 || minsize < 1 || maxsize < minsize) die("bad arguments");

    // The main thread allocates the first objects: the first thread's frees are remote too.
    chain_t *chains = (chain_t *)calloc((size_t)nchains, sizeof(chain_t));
    for (long t = 0; t < nchains; t++) {
        chain_t *c = &chains[t];
        c->rng = rng_seeded((uint64_t)seed, (uint64_t)t + 1);
        c->next_tag = ((uint64_t)t + 1) << 40;
        c->slots = (slot_t *)xmalloc(sizeof(slot_t) * (size_t)nslots);
        for (long i = 0; i < nslots; i++) {
            slot_t *s = &c->slots[i];
            s->size = (uint32_t)rng_range(&c->rng, (uint64_t)minsize, (uint64_t)maxsize);
            s->tag = c->next_tag++;
            s->p = xmalloc(s->size);
            stamp(s->p, s->size, s->tag);
        }
    }

    double t0 = now_seconds();
    for (long t = 0; t < nchains; t++) {
        pthread_t first;
        if (pthread_create(&first, NULL, generation, &chains[t]) != 0) die("pthread_create failed");
        pthread_detach(first);
    }
    pthread_mutex_lock(&done_lock);
    while (chains_done < nchains) pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    double elapsed = now_seconds() - t0;

    uint64_t checksum = 0;
    for (long t = 0; t < nchains; t++) {
        chain_t *c = &chains[t];
        checksum = mix(checksum, c->checksum);
        for (long i = 0; i < nslots; i++) {
            check_stamp(c->slots[i].p, c->slots[i].size, c->slots[i].tag, "thread-handoff (final)");
            free(c->slots[i].p);
        }
        free(c->slots);
    }
    free(chains);
    printf("workload=thread-handoff ops=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           nchains * ngenerations * nops, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
