// stress_remote.c — producers allocate, consumers free: spans churn between caches, central
// lists and the heap while remote frees race every step.
//
// Usage: stress_remote PRODUCERS CONSUMERS MILLISECONDS [SIGNAL_RATE_PER_S [KEEP_ONE_IN]]
//
// Producers allocate small blocks of a few size classes, fill each byte with a pattern
// derived from the block's address, and pass them through single-producer single-consumer
// rings (no locks, no allocation) to consumers, which verify and free them: nearly every
// free is remote, spans run out, are retired, uncached, emptied by remote frees and given
// back to the heap, and their metadata and pages are reused for new spans. Each producer
// also keeps a set of long-lived blocks that it verifies and replaces from time to time: a
// span given back to the heap while one of its blocks is live, or a block handed out
// twice, shows up as a pattern mismatch (or as a bogus `invalid pointer` report). One block
// in KEEP_ONE_IN (default 8; 0 = none) is kept that way; with none, spans empty out while
// cached and go back to the heap straight from their cache.
//
// With SIGNAL_RATE_PER_S > 0 a disturber thread sends SIGUSR1 to random consumers; the
// handler spins for up to ~200 us. That stretches windows between two instructions of free
// (as a preemption would) far more often than the scheduler alone does.
//
// The run lasts MILLISECONDS, but not by the clock alone: every producer makes at least
// MIN_ALLOCS blocks and, with signals, the disturber sends at least MIN_SIGNALS before they
// stop, so an overloaded machine cannot make the run pass without doing the work.
//
// At the end everything is freed; under GoMalloc (GOMALLOC_TEST_EXPECT_GOMALLOC=1) the
// bytes in use (mallinfo2) must be back where they started. Prints `OK stress_remote`.
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { MAX_PRODUCERS = 16, MAX_CONSUMERS = 32, RING = 1024, KEEP = 512, MIN_ALLOCS = 3000, MIN_SIGNALS = 50 };

typedef struct {
    _Atomic size_t head;  // written by the consumer
    char pad1[56];
    _Atomic size_t tail;  // written by the producer
    char pad2[56];
    void *slots[RING];
} ring;

static int nproducers, nconsumers;
static ring rings[MAX_PRODUCERS][MAX_CONSUMERS];
static atomic_int stop;
static long keep_one_in = 8;
static atomic_int producers_done;
static atomic_long frees_done, allocs_done, signals_sent;
static pthread_t consumer_threads[MAX_CONSUMERS];

static const size_t sizes[] = {16, 48, 64, 112, 256, 1024};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

// Block layout: word 0 = size, then bytes derived from the address.
static inline unsigned char byte_at(const unsigned char *p, size_t i) {
    uintptr_t a = (uintptr_t)p;
    return (unsigned char)((a >> 4) ^ (a >> 13) ^ (i * 29));
}

static void *make(size_t size) {
    unsigned char *p = malloc(size);
    CHECK(p != NULL);
    memcpy(p, &size, sizeof size);
    for (size_t i = sizeof size; i < size; i++) p[i] = byte_at(p, i);
    return p;
}

static void check_block(const unsigned char *p, const char *who) {
    size_t size;
    memcpy(&size, p, sizeof size);
    int known = 0;
    for (int k = 0; k < NSIZES; k++) known |= sizes[k] == size;
    CHECKF(known, "%s: block %p has a corrupted size word %zu", who, (const void *)p, size);
    for (size_t i = sizeof size; i < size; i++)
        CHECKF(p[i] == byte_at(p, i), "%s: block %p (size %zu) byte %zu is 0x%02x, want 0x%02x", who,
               (const void *)p, size, i, p[i], byte_at(p, i));
}

static int ring_push(ring *r, void *p) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&r->head, memory_order_acquire) == RING) return 0;
    r->slots[t % RING] = p;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return 1;
}

static void *ring_pop(ring *r) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == atomic_load_explicit(&r->tail, memory_order_acquire)) return NULL;
    void *p = r->slots[h % RING];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return p;
}

static void *producer(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t rng = 0x51ED5EEDULL + (uint64_t)me * 0x9E3779B97F4A7C15ULL;
    void *keep[KEEP] = {0};
    long n = 0;
    while (n < MIN_ALLOCS || !atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        size_t size = sizes[(r >> 3) % NSIZES];
        void *p = make(size);
        if (keep_one_in > 0 && (r >> 11) % (uint64_t)keep_one_in == 0) {
            // Long-lived: replace one, verifying it first.
            void **slot = &keep[(r >> 16) % KEEP];
            if (*slot) {
                check_block(*slot, "long-lived block");
                free(*slot);
            }
            *slot = p;
        } else {
            int c = (int)((r >> 24) % (uint64_t)nconsumers);
            if (!ring_push(&rings[me][c], p)) {
                check_block(p, "unsent block");
                free(p);
            }
        }
        n++;
    }
    for (int i = 0; i < KEEP; i++) {
        if (keep[i]) {
            check_block(keep[i], "long-lived block at exit");
            free(keep[i]);
        }
    }
    atomic_fetch_add(&allocs_done, n);
    atomic_fetch_add(&producers_done, 1);
    return NULL;
}

static void *consumer(void *arg) {
    int me = (int)(intptr_t)arg;
    long n = 0;
    void *held[8] = {0};
    unsigned k = 0;
    for (;;) {
        int got = 0;
        for (int p = 0; p < nproducers; p++) {
            void *b;
            while ((b = ring_pop(&rings[p][me])) != NULL) {
                check_block(b, "received block");
                // Hold some blocks a little longer, so frees are not in allocation order.
                void **slot = &held[k++ % 8];
                if (*slot) {
                    check_block(*slot, "held block");
                    free(*slot);
                }
                *slot = b;
                n++;
                got = 1;
            }
        }
        if (!got) {
            if (atomic_load(&producers_done) == nproducers) break;
            sched_yield();
        }
    }
    for (int i = 0; i < 8; i++) {
        if (held[i]) {
            check_block(held[i], "held block at exit");
            free(held[i]);
        }
    }
    atomic_fetch_add(&frees_done, n);
    return NULL;
}

static void on_signal(int sig) {
    (void)sig;
    // Spin 0-200 us: a preemption at whatever instruction the thread was on.
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t end = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec + (uint64_t)(ts.tv_nsec % 200000);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec >= end) break;
    }
}

static long signal_rate;

static void *disturber(void *arg) {
    (void)arg;
    uint64_t rng = 42;
    uint64_t interval = 1000000000ULL / (uint64_t)signal_rate;
    for (long sent = 0; sent < MIN_SIGNALS || !atomic_load(&stop); sent++) {
        pthread_kill(consumer_threads[rng_next(&rng) % (uint64_t)nconsumers], SIGUSR1);
        atomic_fetch_add_explicit(&signals_sent, 1, memory_order_relaxed);
        struct timespec ts = {0, (long)interval};
        nanosleep(&ts, NULL);  // the signal rate, not synchronisation
    }
    return NULL;
}

static void *idle(void *arg) { return arg; }

static size_t in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

int main(int argc, char **argv) {
    CHECKF(argc >= 4, "usage: stress_remote PRODUCERS CONSUMERS MILLISECONDS [SIGNAL_RATE_PER_S [KEEP_ONE_IN]]");
    nproducers = atoi(argv[1]);
    nconsumers = atoi(argv[2]);
    long ms = atol(argv[3]);
    signal_rate = argc > 4 ? atol(argv[4]) : 0;
    if (argc > 5) keep_one_in = atol(argv[5]);
    CHECK(nproducers >= 1 && nproducers <= MAX_PRODUCERS && nconsumers >= 1 && nconsumers <= MAX_CONSUMERS);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    // Small stacks, and a first round of idle threads: libc caches the stacks with their TLS
    // (allocated with malloc), so the real round allocates nothing of libc's own.
    pthread_attr_t attr;
    // Before the warm-up: the scavenger thread takes a stack from glibc's cache too.
    start_allocator_threads();
    CHECK(pthread_attr_init(&attr) == 0);
    CHECK(pthread_attr_setstacksize(&attr, 256 << 10) == 0);
    int nthreads = nconsumers + nproducers + 1;
    pthread_t warm[MAX_PRODUCERS + MAX_CONSUMERS + 1];
    for (int i = 0; i < nthreads; i++) CHECK(pthread_create(&warm[i], &attr, idle, NULL) == 0);
    for (int i = 0; i < nthreads; i++) CHECK(pthread_join(warm[i], NULL) == 0);

    size_t before = in_use();
    pthread_t prod[MAX_PRODUCERS], dist;
    for (int i = 0; i < nconsumers; i++)
        CHECK(pthread_create(&consumer_threads[i], &attr, consumer, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < nproducers; i++) CHECK(pthread_create(&prod[i], &attr, producer, (void *)(intptr_t)i) == 0);
    if (signal_rate > 0) CHECK(pthread_create(&dist, &attr, disturber, NULL) == 0);
    uint64_t end = now_ns() + (uint64_t)ms * 1000000ULL;
    while (now_ns() < end) usleep(5000);  // the run's length; the minimums above do not depend on it
    atomic_store(&stop, 1);
    for (int i = 0; i < nproducers; i++) CHECK(pthread_join(prod[i], NULL) == 0);
    if (signal_rate > 0) CHECK(pthread_join(dist, NULL) == 0);
    for (int i = 0; i < nconsumers; i++) CHECK(pthread_join(consumer_threads[i], NULL) == 0);
    size_t after = in_use();
    printf("%d producers, %d consumers, %ld ms: %ld allocations, %ld received, %ld signals\n", nproducers,
           nconsumers, ms, atomic_load(&allocs_done), atomic_load(&frees_done), atomic_load(&signals_sent));
    const char *expect = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC");
    if (expect && strcmp(expect, "1") == 0)
        CHECKF(after == before, "bytes in use: %zu before, %zu after everything was freed", before, after);
    printf("OK stress_remote\n");
    return 0;
}
