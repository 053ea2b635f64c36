// stress_threads.c — many threads hand blocks to each other while every byte is checked.
//
// Usage: stress_threads THREADS MILLISECONDS [FORK_INTERVAL_MS] [SEED]
//
// Each worker keeps a pool of blocks and, at random, allocates (malloc, calloc, realloc
// from NULL, memalign, posix_memalign, aligned_alloc, valloc; 1 byte to 4 MiB, mostly
// small), resizes (realloc chains that grow and shrink, in place or moving), frees, or
// hands a block to another worker's inbox, which verifies and frees or adopts it. Every
// byte of every block carries a pattern derived from the block's seed; it is verified
// before each free and after each realloc (the common prefix), so a block handed out
// twice, freed memory reused while live, or a bad copy shows up as a mismatch. calloc
// blocks are checked to be all zero first (reused memory must be cleared); alignment is
// checked against C's promise or the requested alignment; malloc_usable_size against the
// size. With FORK_INTERVAL_MS > 0 the main thread forks every so often while the workers
// run; each child allocates, checks and frees in every size regime and exits 0.
//
// The run lasts MILLISECONDS, but not by the clock alone: every worker does at least MIN_OPS
// operations before it stops, and with forks at least one fork happens while the workers
// run, so a slow or overloaded machine cannot make the run pass without doing the work.
//
// At the end everything is freed; under GoMalloc (GOMALLOC_TEST_EXPECT_GOMALLOC=1) the
// bytes in use (mallinfo2) must be back where they were before the workers started.
// Prints `OK stress_threads` last on success; a failed check prints FAIL and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { MAX_THREADS = 64, POOL = 192, INBOX = 64, MIN_OPS = 2000 };

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t seed;
    size_t align;  // requested alignment (0: C's default promise)
} block;

typedef struct {
    pthread_mutex_t lock;
    int count;
    block items[INBOX];
    char pad[64];
} inbox;

static int nthreads;
static inbox inboxes[MAX_THREADS];
static atomic_int stop;
static atomic_long ops_done;
static atomic_long bytes_verified;
static uint64_t run_seed;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline unsigned char pattern_byte(uint64_t seed, size_t i) {
    uint64_t x = seed ^ (i * 0x9E3779B97F4A7C15ULL);
    return (unsigned char)((x >> 29) ^ (x >> 7) ^ i ^ (i >> 9));
}

static void fill(unsigned char *p, size_t from, size_t to, uint64_t seed) {
    for (size_t i = from; i < to; i++) p[i] = pattern_byte(seed, i);
}

static void verify(const block *b, const char *when) {
    for (size_t i = 0; i < b->size; i++) {
        if (b->p[i] != pattern_byte(b->seed, i)) {
            fprintf(stderr, "FAIL %s: block %p size %zu byte %zu is 0x%02x, want 0x%02x\n", when, (void *)b->p,
                    b->size, i, b->p[i], pattern_byte(b->seed, i));
            exit(1);
        }
    }
    atomic_fetch_add_explicit(&bytes_verified, (long)b->size, memory_order_relaxed);
}

/// Mostly small, sometimes medium, rarely large, very rarely up to 4 MiB.
static size_t random_size(uint64_t *rng) {
    uint64_t r = rng_next(rng);
    unsigned pick = r % 1000;
    r >>= 10;
    if (pick < 600) return 1 + r % 128;
    if (pick < 850) return 129 + r % 2048;
    if (pick < 970) return 2049 + r % 30720;           // up to 32 KiB: the largest classes
    if (pick < 998) return 32769 + r % (512 << 10);    // large spans
    return (1 << 20) + r % (3 << 20);                  // 1-4 MiB: mremap territory
}

static void check_alignment(const block *b) {
    uintptr_t want = b->align ? b->align : promised_alignment(b->size);
    CHECKF(is_aligned(b->p, want), "%p (size %zu) not aligned to %zu", (void *)b->p, b->size, (size_t)want);
}

/// A new block of a random size and allocation function, filled with its pattern.
static block new_block(uint64_t *rng) {
    block b = {0};
    b.size = random_size(rng);
    b.seed = rng_next(rng);
    uint64_t r = rng_next(rng);
    switch (r % 20) {
    case 0: case 1: case 2: {  // calloc: must be zero, even when the memory is reused
        size_t n = 1 + (r >> 8) % 4;
        size_t each = (b.size + n - 1) / n;
        b.size = n * each;
        b.p = calloc(n, each);
        CHECK(b.p != NULL);
        for (size_t i = 0; i < b.size; i++)
            CHECKF(b.p[i] == 0, "calloc(%zu, %zu) = %p: byte %zu is 0x%02x", n, each, (void *)b.p, i, b.p[i]);
        break;
    }
    case 3:
        b.p = realloc(NULL, b.size);
        break;
    case 4: case 5: {  // the aligned family, 8 B to 64 KiB (rarely 1 MiB)
        size_t align = (size_t)8 << ((r >> 8) % 14);
        if ((r >> 16) % 64 == 0) align = 1 << 20;
        int which = (int)((r >> 24) % 4);
        if (which == 0) {
            void *q = NULL;
            CHECK(posix_memalign(&q, align, b.size) == 0);
            b.p = q;
        } else if (which == 1) {
            b.p = memalign(align, b.size);
        } else if (which == 2) {
            b.p = aligned_alloc(align, b.size);
        } else {
            align = 4096;
            b.p = valloc(b.size);
        }
        b.align = align < promised_alignment(b.size) ? 0 : align;
        break;
    }
    default:
        b.p = malloc(b.size);
        break;
    }
    CHECKF(b.p != NULL, "allocation of %zu bytes failed", b.size);
    check_alignment(&b);
    if ((r >> 40) % 16 == 0) CHECK(malloc_usable_size(b.p) >= b.size);
    fill(b.p, 0, b.size, b.seed);
    return b;
}

static void release(block *b, const char *when) {
    verify(b, when);
    free(b->p);
    b->p = NULL;
}

/// realloc to a random size (a chain over calls): the common prefix must survive.
static void resize(block *b, uint64_t *rng) {
    size_t old = b->size;
    uint64_t r = rng_next(rng);
    size_t size;
    switch (r % 4) {
    case 0: size = old + 1 + (r >> 8) % 64; break;                       // creep up
    case 1: size = old > 1 ? old - (r >> 8) % (old / 2 + 1) : 1; break;  // shrink
    case 2: size = old * 2 + (r >> 8) % 100; break;                      // double
    default: size = random_size(rng); break;
    }
    if (size > (4 << 20)) size = 1 + (r >> 20) % (4 << 20);
    if (size == 0) size = 1;
    if (old > 256 && r % 3 == 0) verify(b, "before realloc");
    unsigned char *q = realloc(b->p, size);
    CHECKF(q != NULL, "realloc(%p, %zu) failed", (void *)b->p, size);
    b->p = q;
    b->size = size < old ? size : old;
    b->align = 0;
    verify(b, "after realloc");
    b->size = size;
    check_alignment(b);
    fill(b->p, old < size ? old : size, size, b->seed);
}

static int send_block(int to, block *b) {
    inbox *in = &inboxes[to];
    int sent = 0;
    pthread_mutex_lock(&in->lock);
    if (in->count < INBOX) {
        in->items[in->count++] = *b;
        sent = 1;
    }
    pthread_mutex_unlock(&in->lock);
    return sent;
}

static int receive(int me, block *out, int max) {
    inbox *in = &inboxes[me];
    pthread_mutex_lock(&in->lock);
    int n = in->count < max ? in->count : max;
    in->count -= n;
    memcpy(out, &in->items[in->count], (size_t)n * sizeof(block));
    pthread_mutex_unlock(&in->lock);
    return n;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t rng = (run_seed * 0x9E3779B97F4A7C15ULL) ^ (0x1234567ULL * (uint64_t)(me + 1)) ^ 1;
    block pool[POOL];
    memset(pool, 0, sizeof pool);
    long ops = 0;
    while (ops < MIN_OPS || !atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        block *b = &pool[(r >> 8) % POOL];
        unsigned op = r % 100;
        if (op < 35) {
            if (b->p) release(b, "free before reuse");
            *b = new_block(&rng);
        } else if (op < 50) {
            if (b->p) resize(b, &rng);
        } else if (op < 70) {
            if (b->p) release(b, "free");
        } else if (op < 90) {
            if (b->p && nthreads > 1) {
                int to = (int)((r >> 32) % (uint64_t)(nthreads - 1));
                if (to >= me) to++;
                if (send_block(to, b)) b->p = NULL;
            }
        } else {
            block got[16];
            int n = receive(me, got, 16);
            for (int i = 0; i < n; i++) {
                block *slot = &pool[(rng_next(&rng) >> 8) % POOL];
                if (slot->p == NULL && i % 2 == 0) {
                    verify(&got[i], "adopted");
                    *slot = got[i];  // adopt: a later free or realloc of it is remote
                } else {
                    release(&got[i], "received");
                }
            }
        }
        if (++ops % 1024 == 0) atomic_fetch_add_explicit(&ops_done, 1024, memory_order_relaxed);
    }
    for (int i = 0; i < POOL; i++)
        if (pool[i].p) release(&pool[i], "final free");
    return NULL;
}

/// A forked child: only this thread exists. Allocate, check and free in every regime.
static void child_work(uint64_t seed) {
    alarm(20);
    uint64_t rng = seed | 1;
    block blocks[64];
    memset(blocks, 0, sizeof blocks);
    for (int round = 0; round < 2000; round++) {
        block *b = &blocks[rng_next(&rng) % 64];
        if (b->p) {
            if (rng_next(&rng) % 3 == 0) resize(b, &rng); else release(b, "child free");
        } else {
            *b = new_block(&rng);
        }
    }
    for (int i = 0; i < 64; i++)
        if (blocks[i].p) release(&blocks[i], "child final free");
    _exit(0);
}

static size_t in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/// Fork a child that runs child_work and wait for it: it must exit 0.
static void fork_and_check(uint64_t seed, int forks) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) child_work(seed + (uint64_t)forks * 1000003);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child %d: status 0x%x", forks, status);
}

static void run_workers(int n, long ms, long fork_ms, uint64_t seed) {
    pthread_t threads[MAX_THREADS];
    atomic_store(&stop, 0);
    atomic_store(&ops_done, 0);
    run_seed = seed;
    for (int i = 0; i < n; i++) CHECK(pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i) == 0);
    uint64_t end = now_ms() + (uint64_t)ms;
    uint64_t next_fork = fork_ms > 0 ? now_ms() + (uint64_t)fork_ms : UINT64_MAX;
    int forks = 0;
    while (now_ms() < end) {
        if (now_ms() >= next_fork) {
            fork_and_check(seed, forks++);
            next_fork = now_ms() + (uint64_t)fork_ms;
        }
        usleep(2000);  // pacing only
    }
    // Forks were asked for: at least one while the workers still run (they are not stopped yet).
    if (fork_ms > 0 && forks == 0) fork_and_check(seed, forks++);
    atomic_store(&stop, 1);
    for (int i = 0; i < n; i++) CHECK(pthread_join(threads[i], NULL) == 0);
    // Whatever is still in an inbox.
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < inboxes[i].count; k++) release(&inboxes[i].items[k], "inbox at exit");
        inboxes[i].count = 0;
    }
    printf("threads %d, %ld ms: %ld ops, %ld MiB verified, %d forks\n", n, ms, atomic_load(&ops_done),
           atomic_load(&bytes_verified) >> 20, forks);
}

int main(int argc, char **argv) {
    CHECKF(argc >= 3, "usage: stress_threads THREADS MILLISECONDS [FORK_INTERVAL_MS] [SEED]");
    nthreads = atoi(argv[1]);
    long ms = atol(argv[2]);
    long fork_ms = argc > 3 ? atol(argv[3]) : 0;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
    CHECK(nthreads >= 1 && nthreads <= MAX_THREADS && ms >= 0);
    for (int i = 0; i < MAX_THREADS; i++) pthread_mutex_init(&inboxes[i].lock, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("start\n");
    // A short first round warms up what libc keeps per thread (stacks and their TLS), so
    // that the in-use count after the real round can be compared with the one before it.
    // Before the warm-up: the scavenger thread takes a stack from glibc's cache too.
    start_allocator_threads();
    run_workers(nthreads, 20, 0, seed + 99);
    malloc_trim(0);
    size_t before = in_use();
    run_workers(nthreads, ms, fork_ms, seed);
    size_t after = in_use();
    const char *expect = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC");
    if (expect && strcmp(expect, "1") == 0) {
        // Every P may keep one tiny block open (16 bytes, in use as Go counts its mcache's
        // tiny block) until it allocates again; trim closes them all.
        malloc_trim(0);
        after = in_use();
        CHECKF(after == before, "bytes in use: %zu before the workers, %zu after they freed everything", before, after);
    }
    printf("OK stress_threads\n");
    return 0;
}
