// threads.c — many threads allocating and freeing across threads.
//
// Producers allocate objects of every size regime, stamp them with their size and a
// pattern, and hand them in batches through a shared queue to consumers, which check the
// stamp, sometimes grow the object with realloc, and free it: nearly every free is of a
// block another thread allocated. Every thread also churns on private blocks. At the end
// every object must have been seen exactly once with its contents intact.
// Usage: threads [producers consumers objects-per-producer]
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

enum { BATCH = 32, QUEUE = 64 };

struct object {
    size_t size;       // bytes including this header
    uint64_t seed;     // pattern seed for the bytes after the header
    uint64_t producer; // who made it
};

struct batch {
    int count;
    struct object *items[BATCH];
};

// A bounded queue of batches, guarded by one mutex.
static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct batch *slots[QUEUE];
    int head, count, producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0};

static long per_producer = 50000;
static atomic_long consumed, consumed_bytes, produced_bytes;

static void push(struct batch *b) {
    pthread_mutex_lock(&q.lock);
    while (q.count == QUEUE) pthread_cond_wait(&q.not_full, &q.lock);
    q.slots[(q.head + q.count) % QUEUE] = b;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

// NULL when every producer is done and the queue is empty.
static struct batch *pop(void) {
    pthread_mutex_lock(&q.lock);
    while (q.count == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.lock);
    struct batch *b = NULL;
    if (q.count > 0) {
        b = q.slots[q.head];
        q.head = (q.head + 1) % QUEUE;
        q.count--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.lock);
    return b;
}

static size_t pick_size(uint64_t r) {
    switch (r % 64) {
    case 0: return 33000 + (r >> 16) % 400000;            // large
    case 1: case 2: case 3: return 4000 + (r >> 16) % 28000; // medium
    default: return sizeof(struct object) + (r >> 16) % 1024; // small
    }
}

static void private_churn(uint64_t *rng) {
    void *local[16];
    for (int i = 0; i < 16; i++) {
        local[i] = malloc(1 + rng_next(rng) % 300);
        CHECK(local[i] != NULL);
    }
    for (int i = 15; i >= 0; i--) free(local[i]);
}

static void *producer(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg;
    uint64_t rng = 0x9E3779B97F4A7C15ULL * (id + 1);
    struct batch *b = NULL;
    for (long n = 0; n < per_producer; n++) {
        if (b == NULL) {
            b = malloc(sizeof *b);
            CHECK(b != NULL);
            b->count = 0;
        }
        uint64_t r = rng_next(&rng);
        size_t size = pick_size(r);
        struct object *o = (r >> 60) == 0 ? calloc(1, size) : malloc(size);
        CHECK(o != NULL);
        CHECK(is_aligned(o, 16));
        o->size = size;
        o->seed = r;
        o->producer = id;
        size_t body = size - sizeof *o;
        fill_pattern(o + 1, body < 256 ? body : 256, r);
        atomic_fetch_add(&produced_bytes, (long)size);
        b->items[b->count++] = o;
        if (b->count == BATCH) {
            push(b);
            b = NULL;
        }
        if (n % 64 == 0) private_churn(&rng);
    }
    if (b != NULL) push(b);
    pthread_mutex_lock(&q.lock);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static void *consumer(void *arg) {
    uint64_t rng = 12345 + (uint64_t)(uintptr_t)arg;
    struct batch *b;
    while ((b = pop()) != NULL) {
        for (int i = 0; i < b->count; i++) {
            struct object *o = b->items[i];
            size_t body = o->size - sizeof *o;
            CHECKF(verify_pattern(o + 1, body < 256 ? body : 256, o->seed), "object of %zu bytes from producer %lu",
                   o->size, (unsigned long)o->producer);
            atomic_fetch_add(&consumed_bytes, (long)o->size);
            if (o->seed % 7 == 0) {
                // Grow it (possibly into another size class or regime) before freeing.
                struct object *g = realloc(o, o->size * 2 + 100);
                CHECK(g != NULL);
                CHECK(verify_pattern(g + 1, body < 256 ? body : 256, g->seed));
                o = g;
            }
            free(o);
        }
        atomic_fetch_add(&consumed, b->count);
        free(b);
        if (rng_next(&rng) % 4 == 0) private_churn(&rng);
    }
    return NULL;
}

int main(int argc, char **argv) {
    alarm(300);
    int producers = 6, consumers = 6;
    if (argc == 4) {
        producers = atoi(argv[1]);
        consumers = atoi(argv[2]);
        per_producer = atol(argv[3]);
    }
    q.producers_left = producers;
    pthread_t *pt = malloc(sizeof(pthread_t) * (size_t)producers);
    pthread_t *ct = malloc(sizeof(pthread_t) * (size_t)consumers);
    CHECK(pt != NULL && ct != NULL);
    for (int i = 0; i < consumers; i++) CHECK(pthread_create(&ct[i], NULL, consumer, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < producers; i++) CHECK(pthread_create(&pt[i], NULL, producer, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < producers; i++) CHECK(pthread_join(pt[i], NULL) == 0);
    for (int i = 0; i < consumers; i++) CHECK(pthread_join(ct[i], NULL) == 0);
    CHECKF(atomic_load(&consumed) == producers * per_producer, "consumed %ld of %ld", atomic_load(&consumed),
           producers * per_producer);
    CHECK(atomic_load(&consumed_bytes) == atomic_load(&produced_bytes));
    free(pt);
    free(ct);
    printf("OK threads\n");
    return 0;
}
