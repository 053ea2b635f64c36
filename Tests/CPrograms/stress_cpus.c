// stress_cpus.c — Ps bound to CPUs under preemption, migration and restricted affinity.
//
// Usage: stress_cpus THREADS MILLISECONDS SIGNALS_PER_S [all|one|migrate]
//
// THREADS workers (more than the CPUs) allocate blocks of mixed sizes, fill each with a
// pattern derived from its address, keep some, free some after verifying them, and swap
// others through a shared table of atomic slots, so that about a third of all frees happen
// on another thread (and often another CPU) than the malloc. A disturber sends SIGUSR1 to
// random workers at SIGNALS_PER_S; the handler returns at once, so the signals land inside
// malloc and free (and their restartable sequences) as often as anywhere else, and each one
// aborts the section it interrupts.
//
//   all      the process's affinity as given;
//   one      the whole process is first restricted to one CPU (sched_setaffinity): every
//            thread contends for that CPU's P, preempted holders send the others to the
//            fallback Ps;
//   migrate  each worker moves itself to another allowed CPU every few hundred operations,
//            so that threads change CPU (and P) between, and during, calls.
//
// Every worker does at least MIN_OPS operations and the disturber sends at least MIN_SIGNALS,
// so a slow machine cannot pass without the work. At the end everything is freed; under
// GoMalloc (GOMALLOC_TEST_EXPECT_GOMALLOC=1) the bytes in use (mallinfo2) must be back where
// they started. Prints `OK stress_cpus`.
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { MAX_THREADS = 64, KEEP = 64, SHARED = 256, MIN_OPS = 20000, MIN_SIGNALS = 200 };

static const size_t sizes[] = {8, 16, 24, 48, 96, 256, 640, 1024, 3072, 9000, 40000};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

static _Atomic(void *) shared[SHARED];
static atomic_int stop;
static atomic_long ops_done, signals_sent, signals_seen, migrations;
static pthread_t workers[MAX_THREADS];
static int nthreads;
static int migrate;
static cpu_set_t allowed;

/// A block's size sits in its first word; the rest is a pattern of its address.
static void *make(size_t size) {
    size_t *p = malloc(size);
    CHECK(p != NULL);
    CHECKF(is_aligned(p, promised_alignment(size)), "%p for %zu bytes", (void *)p, size);
    p[0] = size;
    fill_pattern(p + 1, size - sizeof(size_t), (uint64_t)(uintptr_t)p);
    return p;
}

static void check_and_free(void *b, const char *what) {
    size_t *p = b;
    size_t size = p[0];
    int known = 0;
    for (int i = 0; i < NSIZES; i++) known |= sizes[i] == size;
    CHECKF(known, "%s %p: size word %zu overwritten", what, b, size);
    CHECKF(verify_pattern(p + 1, size - sizeof(size_t), (uint64_t)(uintptr_t)p), "%s %p (%zu bytes) overwritten", what,
           b, size);
    free(b);
}

static void move_to_another_cpu(uint64_t *rng) {
    int count = CPU_COUNT(&allowed);
    if (count < 2) return;
    int k = (int)(rng_next(rng) % (uint64_t)count);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (k-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
            atomic_fetch_add_explicit(&migrations, 1, memory_order_relaxed);
            return;
        }
    }
}

static void *worker(void *arg) {
    uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)((intptr_t)arg + 1);
    void *keep[KEEP] = {0};
    long n = 0;
    while (n < MIN_OPS || !atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        void *p = make(sizes[(r >> 4) % NSIZES]);
        switch ((r >> 12) % 3) {
        case 0:  // freed at once, on this thread
            check_and_free(p, "fresh block");
            break;
        case 1: {  // kept a while, freed on this thread
            void **slot = &keep[(r >> 16) % KEEP];
            if (*slot) check_and_free(*slot, "kept block");
            *slot = p;
            break;
        }
        default: {  // swapped into the shared table: freed by whichever thread takes it
            void *old = atomic_exchange(&shared[(r >> 20) % SHARED], p);
            if (old) check_and_free(old, "shared block");
        }
        }
        if (migrate && (r >> 40) % 256 == 0) move_to_another_cpu(&rng);
        n++;
    }
    for (int i = 0; i < KEEP; i++)
        if (keep[i]) check_and_free(keep[i], "kept block at exit");
    atomic_fetch_add(&ops_done, n);
    return NULL;
}

static void on_signal(int sig) {
    (void)sig;
    atomic_fetch_add_explicit(&signals_seen, 1, memory_order_relaxed);
}

static long signal_rate;

/// Bursts every millisecond (a sleep cannot be much shorter): SIGNALS_PER_S / 1000 each.
static void *disturber(void *arg) {
    (void)arg;
    uint64_t rng = 42;
    long burst = signal_rate / 1000 > 0 ? signal_rate / 1000 : 1;
    long sent = 0;
    while (sent < MIN_SIGNALS || !atomic_load(&stop)) {
        for (long k = 0; k < burst; k++, sent++) pthread_kill(workers[rng_next(&rng) % (uint64_t)nthreads], SIGUSR1);
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);  // the signal rate, not synchronisation
    }
    atomic_store(&signals_sent, sent);
    return NULL;
}

static void *idle(void *arg) { return arg; }

static size_t in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

int main(int argc, char **argv) {
    CHECK(argc >= 4);
    nthreads = atoi(argv[1]);
    long ms = atol(argv[2]);
    signal_rate = atol(argv[3]);
    const char *mode = argc > 4 ? argv[4] : "all";
    CHECK(nthreads > 0 && nthreads <= MAX_THREADS && signal_rate > 0);
    CHECK(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
    if (strcmp(mode, "one") == 0) {
        int first = 0;
        while (!CPU_ISSET(first, &allowed)) first++;
        CPU_ZERO(&allowed);
        CPU_SET(first, &allowed);
        CHECK(sched_setaffinity(0, sizeof allowed, &allowed) == 0);
    } else if (strcmp(mode, "migrate") == 0) {
        migrate = 1;
    } else {
        CHECK(strcmp(mode, "all") == 0);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);

    // A first round of idle threads: libc caches their stacks with the TLS it allocated
    // with malloc, so the real round allocates nothing of libc's own.
    setvbuf(stdout, NULL, _IOLBF, 0);
    // Before the warm-up: the scavenger thread takes a stack from glibc's cache too.
    start_allocator_threads();
    pthread_t warm[MAX_THREADS + 1];
    for (int i = 0; i <= nthreads; i++) CHECK(pthread_create(&warm[i], NULL, idle, NULL) == 0);
    for (int i = 0; i <= nthreads; i++) CHECK(pthread_join(warm[i], NULL) == 0);

    size_t before = in_use();
    for (int i = 0; i < nthreads; i++) CHECK(pthread_create(&workers[i], NULL, worker, (void *)(intptr_t)i) == 0);
    pthread_t dist;
    CHECK(pthread_create(&dist, NULL, disturber, NULL) == 0);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);  // the run's length; the minimum counts above make the work
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++) CHECK(pthread_join(workers[i], NULL) == 0);
    CHECK(pthread_join(dist, NULL) == 0);
    for (int i = 0; i < SHARED; i++) {
        void *p = atomic_exchange(&shared[i], NULL);
        if (p) check_and_free(p, "shared block at exit");
    }
    size_t after = in_use();
    printf("%d threads (%s), %ld ms: %ld operations, %ld signals sent, %ld handled, %ld migrations\n", nthreads, mode,
           ms, atomic_load(&ops_done), atomic_load(&signals_sent), atomic_load(&signals_seen),
           atomic_load(&migrations));
    CHECK(atomic_load(&ops_done) >= (long)nthreads * MIN_OPS);
    CHECK(atomic_load(&signals_seen) > 0);
    if (migrate && CPU_COUNT(&allowed) > 1) CHECK(atomic_load(&migrations) > 0);
    const char *expect = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC");
    if (expect && strcmp(expect, "1") == 0)
        CHECKF(after == before, "%zu bytes in use at the start, %zu at the end", before, after);
    printf("OK stress_cpus\n");
    return 0;
}
