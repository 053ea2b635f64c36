// batch-handoff: threads allocate batches of blocks of many sizes, churn them, and free part
// of each batch themselves and hand the rest to the next thread to free. Modelled on rptest
// (rpmalloc's benchmark, as mimalloc-bench runs it): in each loop a thread allocates
// `batch` blocks with sizes spread over [min, max] (skewed to small), replaces random ones
// `ops` times, frees `100 - cross` percent of its older batch itself and passes the other
// `cross` percent to its neighbour, which frees them when it next looks at its inbox. So
// frees are mostly local, with a steady stream of cross-thread ones, over sizes from a few
// bytes to 16 KiB.
//
// The checksum adds a hash of every block freed, wherever it was freed: the same for every
// allocator and every interleaving.
//
// Arguments: threads, loops, batch, ops, cross (percent handed over), min, max, seed.
#include "common.h"

typedef struct block {
    struct block *next;  // inbox link, in the block itself (blocks are at least 16 bytes)
    uint32_t size;
    uint32_t tag;
} block_t;

typedef struct {
    pthread_mutex_t lock;
    block_t *head;
    char pad[64];
} inbox_t;

typedef struct {
    int index;
    uint64_t checksum;
    long received;
    char pad[64];
} worker_t;

static long nthreads, nloops, nbatch, nops, cross, minsize, maxsize, seed;
static inbox_t *inboxes;

static size_t skewed_size(rng_t *r) {
    // Square of a uniform fraction: mostly small, the whole range covered.
    double u = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (size_t)minsize + (size_t)(u * u * (double)(maxsize - minsize));
}

static block_t *new_block(rng_t *r, uint32_t tag) {
    size_t n = skewed_size(r);
    block_t *b = (block_t *)xmalloc(n);
    b->next = NULL;
    b->size = (uint32_t)n;
    b->tag = tag;
    if (n >= 32) put_word((unsigned char *)b, n, (n - 8) & ~(size_t)7, pattern_word(tag, 0));
    return b;
}

static void check_block(const block_t *b, const char *what) {
    if (b->size >= 32 && !word_ok((const unsigned char *)b, b->size, (b->size - 8) & ~(size_t)7, pattern_word(b->tag, 0)))
        corruption("%s: block %p of %u bytes (tag %x) was overwritten", what, (const void *)b, b->size, b->tag);
}

static long drain_inbox(inbox_t *in, uint64_t *sum) {
    pthread_mutex_lock(&in->lock);
    block_t *b = in->head;
    in->head = NULL;
    pthread_mutex_unlock(&in->lock);
    long n = 0;
    while (b != NULL) {
        block_t *next = b->next;
        check_block(b, "batch-handoff (received)");
        *sum += pattern_word(b->tag, 1);
        free(b);
        b = next;
        n++;
    }
    return n;
}

static void *worker(void *arg) {
    worker_t *w = (worker_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)w->index + 1);
    inbox_t *mine = &inboxes[w->index], *next = &inboxes[(w->index + 1) % nthreads];
    block_t **cur = (block_t **)xmalloc(sizeof(block_t *) * (size_t)nbatch);
    block_t **old = (block_t **)xmalloc(sizeof(block_t *) * (size_t)nbatch);
    uint32_t tag = ((uint32_t)w->index + 1) << 24;
    uint64_t sum = 0;
    for (long i = 0; i < nbatch; i++) old[i] = NULL;
    for (long l = 0; l < nloops; l++) {
        for (long i = 0; i < nbatch; i++) cur[i] = new_block(&rng, tag++);
        for (long k = 0; k < nops; k++) {
            long i = (long)rng_below(&rng, (uint64_t)nbatch);
            check_block(cur[i], "batch-handoff");
            sum += pattern_word(cur[i]->tag, 1);
            free(cur[i]);
            cur[i] = new_block(&rng, tag++);
        }
        // The older batch: part freed here, the rest handed to the neighbour.
        block_t *handed = NULL;
        for (long i = 0; i < nbatch; i++) {
            block_t *b = old[i];
            if (b == NULL) continue;
            check_block(b, "batch-handoff (old)");
            if ((long)rng_below(&rng, 100) < cross) {
                b->next = handed;
                handed = b;
            } else {
                sum += pattern_word(b->tag, 1);
                free(b);
            }
        }
        if (handed != NULL) {
            block_t *last = handed;
            while (last->next != NULL) last = last->next;
            pthread_mutex_lock(&next->lock);
            last->next = next->head;
            next->head = handed;
            pthread_mutex_unlock(&next->lock);
        }
        block_t **t = old;
        old = cur;
        cur = t;
        w->received += drain_inbox(mine, &sum);
    }
    for (long i = 0; i < nbatch; i++) {
        check_block(old[i], "batch-handoff (final)");
        sum += pattern_word(old[i]->tag, 1);
        free(old[i]);
    }
    free(cur);
    free(old);
    w->checksum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "worker threads in a ring"},
        {"loops", 500, "batches per thread"},
        {"batch", 1000, "blocks per batch"},
        {"ops", 1000, "random replacements within each batch"},
        {"cross", 25, "percent of each old batch handed to the next thread"},
        {"min", 16, "smallest block size (holds the inbox link)"},
        {"max", 16000, "largest block size"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("batch-handoff", argc, argv, args, nargs);
    nthreads = arg_get(args, nargs, "threads");
    nloops = arg_get(args, nargs, "loops");
    nbatch = arg_get(args, nargs, "batch");
    nops = arg_get(args, nargs, "ops");
    cross = arg_get(args, nargs, "cross");
    minsize = arg_get(args, nargs, "min");
    maxsize = arg_get(args, nargs, "max");
    seed = arg_get(args, nargs, "seed");
    if (nthreads < 1 || nloops < 1 || nbatch < 1 || cross < 0 || cross > 100 || minsize < (long)sizeof(block_t)
        || maxsize < minsize)
        die("bad arguments");

    inboxes = (inbox_t *)calloc((size_t)nthreads, sizeof(inbox_t));
    for (long t = 0; t < nthreads; t++) pthread_mutex_init(&inboxes[t].lock, NULL);
    worker_t *ws = (worker_t *)calloc((size_t)nthreads, sizeof(worker_t));
    for (long t = 0; t < nthreads; t++) ws[t].index = (int)t;
    double t0 = now_seconds();
    run_threads((int)nthreads, worker, ws, sizeof(worker_t));
    double elapsed = now_seconds() - t0;
    uint64_t checksum = 0;
    long received = 0;
    for (long t = 0; t < nthreads; t++) {
        received += drain_inbox(&inboxes[t], &checksum);  // what arrived after its owner left
        checksum += ws[t].checksum;
        received += ws[t].received;
    }
    free(ws);
    for (long t = 0; t < nthreads; t++) pthread_mutex_destroy(&inboxes[t].lock);
    free(inboxes);
    printf("workload=batch-handoff ops=%ld received=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           nthreads * nloops * (nbatch + nops), received, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
