// producer-consumer: producer threads allocate objects and hand them, in batches, to
// consumer threads that verify and free them; every free is a remote free. Modelled on
// xmalloc-test (Lever & Boreham's malloc() performance test, as run by mimalloc-bench),
// where some threads allocate and other threads free. Each producer/consumer pair shares
// a bounded single-producer/single-consumer ring of batch pointers; the batches themselves
// are malloc'ed by the producer and freed by the consumer too.
//
// Arguments: threads (pairs = threads/2, at least one), objects (per producer), batch,
// ring (batches in flight per pair), min, max, seed.
#include "common.h"
#include <sched.h>
#include <stdatomic.h>

typedef struct {
    uint32_t count;
    struct item {
        void *p;
        uint32_t size;
        uint64_t tag;
    } items[];
} batch_t;

typedef struct {
    _Atomic(uint64_t) head;  // next slot the producer writes
    char pad1[56];
    _Atomic(uint64_t) tail;  // next slot the consumer reads
    char pad2[56];
    batch_t **slots;
    int index;
    uint64_t produced_sum, consumed_sum, consumed;
    char pad3[64];
} pair_t;

static long npairs, nobjects, nbatch, nring, minsize, maxsize, seed;

static void *producer(void *arg) {
    pair_t *q = (pair_t *)arg;
    rng_t rng = rng_seeded((uint64_t)seed, (uint64_t)q->index + 1);
    uint64_t tag = ((uint64_t)q->index + 1) << 40;
    uint64_t sum = 0;
    for (long done = 0; done < nobjects;) {
        long n = nobjects - done < nbatch ? nobjects - done : nbatch;
        batch_t *b = (batch_t *)xmalloc(sizeof(batch_t) + sizeof(struct item) * (size_t)n);
        b->count = (uint32_t)n;
        for (long i = 0; i < n; i++) {
            struct item *it = &b->items[i];
            it->size = (uint32_t)rng_range(&rng, (uint64_t)minsize, (uint64_t)maxsize);
            it->tag = tag++;
            it->p = xmalloc(it->size);
            fill(it->p, it->size, it->tag);
            sum = mix(sum, it->tag ^ it->size);
        }
        uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
        while (head - atomic_load_explicit(&q->tail, memory_order_acquire) >= (uint64_t)nring) sched_yield();
        q->slots[head % (uint64_t)nring] = b;
        atomic_store_explicit(&q->head, head + 1, memory_order_release);
        done += n;
    }
    q->produced_sum = sum;
    return NULL;
}

static void *consumer(void *arg) {
    pair_t *q = (pair_t *)arg;
    uint64_t sum = 0, count = 0;
    while (count < (uint64_t)nobjects) {
        uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
        while (atomic_load_explicit(&q->head, memory_order_acquire) == tail) sched_yield();
        batch_t *b = q->slots[tail % (uint64_t)nring];
        atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
        for (uint32_t i = 0; i < b->count; i++) {
            struct item *it = &b->items[i];
            verify(it->p, it->size, it->tag, "producer-consumer");
            sum = mix(sum, it->tag ^ it->size);
            free(it->p);
        }
        count += b->count;
        free(b);
    }
    q->consumed_sum = sum;
    q->consumed = count;
    return NULL;
}

int main(int argc, char **argv) {
    arg_t args[] = {
        {"threads", 2, "threads (half produce, half consume)"},
        {"objects", 1000000, "objects allocated by each producer"},
        {"batch", 64, "objects per hand-off"},
        {"ring", 32, "batches in flight per producer/consumer pair"},
        {"min", 8, "smallest object size"},
        {"max", 512, "largest object size"},
        {"seed", 1, "random seed"},
    };
    int nargs = (int)(sizeof args / sizeof args[0]);
    parse_args("producer-consumer", argc, argv, args, nargs);
    npairs = arg_get(args, nargs, "threads") / 2;
    if (npairs < 1) npairs = 1;
    nobjects = arg_get(args, nargs, "objects");
    nbatch = arg_get(args, nargs, "batch");
    nring = arg_get(args, nargs, "ring");
    minsize = arg_get(args, nargs, "min");
    maxsize = arg_get(args, nargs, "max");
    seed = arg_get(args, nargs, "seed");
    if (nobjects < 1 || nbatch < 1 || nring < 1 || minsize < 1 || maxsize < minsize) die("bad arguments");

    pair_t *pairs = (pair_t *)calloc((size_t)npairs, sizeof(pair_t));
    pthread_t *ts = (pthread_t *)xmalloc(sizeof(pthread_t) * (size_t)npairs * 2);
    double t0 = now_seconds();
    for (long i = 0; i < npairs; i++) {
        pairs[i].index = (int)i;
        pairs[i].slots = (batch_t **)calloc((size_t)nring, sizeof(batch_t *));
        if (pthread_create(&ts[2 * i], NULL, producer, &pairs[i]) != 0 ||
            pthread_create(&ts[2 * i + 1], NULL, consumer, &pairs[i]) != 0)
            die("pthread_create failed");
    }
    for (long i = 0; i < 2 * npairs; i++) pthread_join(ts[i], NULL);
    double elapsed = now_seconds() - t0;

    uint64_t checksum = 0;
    for (long i = 0; i < npairs; i++) {
        if (pairs[i].produced_sum != pairs[i].consumed_sum || pairs[i].consumed != (uint64_t)nobjects)
            corruption("producer-consumer: pair %ld consumed %llu objects with checksum %016llx, "
                       "produced %ld with %016llx", i, (unsigned long long)pairs[i].consumed,
                       (unsigned long long)pairs[i].consumed_sum, nobjects,
                       (unsigned long long)pairs[i].produced_sum);
        checksum = mix(checksum, pairs[i].produced_sum);
        free(pairs[i].slots);
    }
    free(pairs);
    free(ts);
    printf("workload=producer-consumer pairs=%ld objects=%ld seconds=%.3f checksum=%016llx maxrss_kib=%ld\n",
           npairs, npairs * nobjects, elapsed, (unsigned long long)checksum, maxrss_kib());
    return 0;
}
