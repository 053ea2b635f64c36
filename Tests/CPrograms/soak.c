// soak.c — a server-like mix for a long time, every byte it reads verified.
//
// Usage: soak [SECONDS [THREADS]]   (defaults: 180 s, 8 threads)
// Each thread loops over a mix: short-lived small objects (8 B - 1 KiB, freed at once or a
// little later), a long-lived cache of 4096 entries (16 B - 16 KiB) replaced at random,
// large buffers (64 KiB - 4 MiB) grown by realloc and shrunk back, calloc'd blocks checked
// zero, and hand-offs: objects put in a shared ring that another thread verifies and frees.
// Every object carries a pattern derived from a tag; every read verifies it. The main
// thread forks a child every 2 s that allocates, verifies and frees in the copied heap,
// then exits (the parent checks its status), and watches progress: if no thread advances
// for 30 s it reports a deadlock. At the end: operations, forks, peak and final RSS, and
// `OK soak`. A mismatch, a failed child or a stall prints FAIL and exits 1.
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { CACHE = 4096, RING = 1024, SHORT = 32 };

static atomic_int stop;
static atomic_ulong progress[64];
static atomic_ulong total_ops;

typedef struct {
    unsigned char *p;
    size_t n;
    uint64_t tag;
} obj_t;

// The hand-off ring: slots hold objects (p != NULL) or are empty; a CAS on `p` takes one.
static _Atomic(unsigned char *) ring_p[RING];
static size_t ring_n[RING];
static uint64_t ring_tag[RING];
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t rng(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned char pat(uint64_t tag, size_t i) { return (unsigned char)((tag * 131u) ^ (i * 7u) ^ (i >> 8)); }

/// Write the pattern (every byte up to 4 KiB, then every 64th byte, and the last).
static void put(unsigned char *p, size_t n, uint64_t tag) {
    for (size_t i = 0; i < n; i += (i < 4096 ? 1 : 64)) p[i] = pat(tag, i);
    if (n) p[n - 1] = pat(tag, n - 1);
}

/// The pattern's bytes below n, without the last byte (a prefix of a longer object).
static void check_grid(const unsigned char *p, size_t n, uint64_t tag, const char *what) {
    for (size_t i = 0; i < n; i += (i < 4096 ? 1 : 64))
        CHECKF(p[i] == pat(tag, i), "%s %p (%zu bytes, tag %llu): byte %zu", what, (void *)p, n,
               (unsigned long long)tag, i);
}

static void check(const unsigned char *p, size_t n, uint64_t tag, const char *what) {
    check_grid(p, n, tag, what);
    if (n) CHECKF(p[n - 1] == pat(tag, n - 1), "%s %p: last byte", what, (void *)p);
}

static obj_t make(size_t n, uint64_t tag) {
    obj_t o = {malloc(n), n, tag};
    CHECKF(o.p != NULL, "malloc(%zu)", n);
    put(o.p, n, tag);
    return o;
}

static void drop(obj_t *o, const char *what) {
    if (!o->p) return;
    check(o->p, o->n, o->tag, what);
    free(o->p);
    o->p = NULL;
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    uint64_t seed = 0x5eed0000u + (uint64_t)id, tag = (uint64_t)id << 40;
    obj_t *cache = calloc(CACHE, sizeof *cache);
    obj_t shorts[SHORT] = {{0}};
    obj_t big = {0};
    CHECK(cache != NULL);
    unsigned long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng(&seed);
        switch (r % 16) {
        case 0: case 1: case 2: case 3: case 4: {  // short-lived: freed now or a little later
            obj_t o = make(8 + (r >> 8) % 1017, ++tag);
            obj_t *slot = &shorts[(r >> 20) % SHORT];
            drop(slot, "short");
            if (r & (1u << 30)) *slot = o; else drop(&o, "short");
            break;
        }
        case 5: case 6: case 7: case 8: {  // the long-lived cache
            obj_t *e = &cache[(r >> 8) % CACHE];
            drop(e, "cache");
            size_t n = (r >> 24) % 8 == 0 ? 1024 + (r >> 32) % 15360 : 16 + (r >> 32) % 496;
            *e = make(n, ++tag);
            break;
        }
        case 9: {  // a large buffer grown by realloc, then shrunk back
            if (!big.p) { big = make(64 << 10, ++tag); break; }
            check(big.p, big.n, big.tag, "big");
            size_t n = big.n < (4 << 20) ? big.n * 2 : 64 << 10;
            unsigned char *q = realloc(big.p, n);
            CHECKF(q != NULL, "realloc(%zu)", n);
            if (n >= big.n) check(q, big.n, big.tag, "big after realloc");
            else check_grid(q, n, big.tag, "big after realloc");
            big.p = q;
            big.n = n;
            big.tag = ++tag;
            put(big.p, n, big.tag);
            break;
        }
        case 10: {  // calloc: zero
            size_t n = 16 + (r >> 8) % 20000;
            unsigned char *z = calloc(1, n);
            CHECK(z != NULL);
            for (size_t i = 0; i < n; i += 61) CHECKF(z[i] == 0, "calloc(%zu) byte %zu", n, i);
            CHECK(z[n - 1] == 0);
            free(z);
            break;
        }
        case 11: case 12: {  // hand one off to whichever thread takes it
            size_t i = (r >> 8) % RING;
            obj_t o = make(16 + (r >> 20) % 2000, ++tag);
            pthread_mutex_lock(&ring_lock);
            unsigned char *old = atomic_exchange(&ring_p[i], o.p);
            size_t on = ring_n[i];
            uint64_t ot = ring_tag[i];
            ring_n[i] = o.n;
            ring_tag[i] = o.tag;
            pthread_mutex_unlock(&ring_lock);
            if (old) { obj_t t = {old, on, ot}; drop(&t, "handed-off (replaced)"); }
            break;
        }
        default: {  // take one another thread handed off
            size_t i = (r >> 8) % RING;
            pthread_mutex_lock(&ring_lock);
            unsigned char *p = atomic_exchange(&ring_p[i], NULL);
            obj_t t = {p, ring_n[i], ring_tag[i]};
            pthread_mutex_unlock(&ring_lock);
            drop(&t, "handed-off");
            break;
        }
        }
        ops++;
        if ((ops & 1023) == 0) {
            atomic_store_explicit(&progress[id], ops, memory_order_relaxed);
            if ((ops & 65535) == 0) malloc_usable_size(cache[0].p ? cache[0].p : big.p);
        }
    }
    for (int i = 0; i < CACHE; i++) drop(&cache[i], "cache at exit");
    for (int i = 0; i < SHORT; i++) drop(&shorts[i], "short at exit");
    drop(&big, "big at exit");
    free(cache);
    atomic_fetch_add(&total_ops, ops);
    return NULL;
}

static long rss_kib(void) { return proc_status_field("VmRSS:"); }

/// A forked child: allocate, verify and free in the copied heap, with a thread of its own.
static void *child_thread(void *arg) {
    (void)arg;
    uint64_t seed = 77;
    for (int i = 0; i < 2000; i++) {
        obj_t o = make(8 + rng(&seed) % 5000, (uint64_t)i);
        drop(&o, "child");
    }
    return NULL;
}

static void run_child(void) {
    obj_t objs[256];
    for (int i = 0; i < 256; i++) objs[i] = make(16 + (size_t)i * 37, (uint64_t)i + 999);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, child_thread, NULL) == 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 256; i++) drop(&objs[i], "child object");
    _exit(0);
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 180;
    int nthreads = argc > 2 ? atoi(argv[2]) : 8;
    CHECK(seconds > 0 && nthreads > 0 && nthreads <= 64);
    pthread_t ts[64];
    for (int i = 0; i < nthreads; i++) CHECK(pthread_create(&ts[i], NULL, worker, (void *)(intptr_t)i) == 0);
    long peak = 0;
    int forks = 0;
    unsigned long last[64] = {0};
    time_t start = time(NULL), stalled_since = start, last_fork = start;
    while (time(NULL) - start < seconds) {
        struct timespec tick = {0, 200 * 1000 * 1000};
        nanosleep(&tick, NULL);
        long rss = rss_kib();
        if (rss > peak) peak = rss;
        int moved = 0;
        for (int i = 0; i < nthreads; i++) {
            unsigned long p = atomic_load_explicit(&progress[i], memory_order_relaxed);
            if (p != last[i]) moved = 1;
            last[i] = p;
        }
        time_t now = time(NULL);
        if (moved) stalled_since = now;
        CHECKF(now - stalled_since < 30, "no thread advanced for 30 s: deadlock");
        if (now - last_fork >= 2) {
            last_fork = now;
            fflush(stdout);
            pid_t pid = fork();
            CHECK(pid >= 0);
            if (pid == 0) run_child();
            int status = 0;
            CHECK(waitpid(pid, &status, 0) == pid);
            CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child %d failed: status %d", forks, status);
            forks++;
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++) pthread_join(ts[i], NULL);
    for (int i = 0; i < RING; i++) {
        obj_t t = {ring_p[i], ring_n[i], ring_tag[i]};
        drop(&t, "handed-off at exit");
    }
    malloc_trim(0);
    printf("soak: %d s, %d threads, %lu operations, %d forks, peak RSS %ld KiB, final RSS %ld KiB\n", seconds,
           nthreads, atomic_load(&total_ops), forks, peak, rss_kib());
    printf("OK soak\n");
    return 0;
}
