// stacks.c — the stack allocator's C API under the drop-in library (gomalloc.h).
//
// Checks gomalloc_stack_alloc's errors (EINVAL for 0, ENOMEM past 1 GiB), every order and
// some large sizes written end to end, threads allocating and freeing each other's stacks
// with every byte verified (and children forked meanwhile using stacks), gomalloc_stack_grow keeping the used top, a ucontext coroutine
// running on a GoMalloc stack, and in forked children that free() of a stack address and a
// second gomalloc_stack_free abort with their one-line reports. With GOMALLOC_STACK_GUARD=1
// in the environment it also checks the guard page: a write to the lowest page of a 64 KiB
// stack kills a child with SIGSEGV, the page above it is writable, small stacks have none.
// Needs the GoMalloc library (LD_PRELOAD); prints `OK stacks` last.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "check.h"
#include <gomalloc.h>

// Weak, so that the program links without -lgomalloc; main checks they resolved.
#pragma weak gomalloc_stack_alloc
#pragma weak gomalloc_stack_free
#pragma weak gomalloc_stack_grow
#pragma weak gomalloc_stack_guard_size

static size_t rounded(size_t n) {
    size_t r = 2048;
    while (r < n) r <<= 1;
    return r;
}

static void fill(unsigned char *lo, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) lo[i] = (unsigned char)(seed + i * 31);
}

static int holds(const unsigned char *lo, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (lo[i] != (unsigned char)(seed + i * 31)) return 0;
    return 1;
}

static void test_errors(void) {
    errno = 0;
    CHECK(gomalloc_stack_alloc(0) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(gomalloc_stack_alloc(((size_t)1 << 30) + 1) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(gomalloc_stack_alloc(SIZE_MAX) == NULL && errno == ENOMEM);
    gomalloc_stack_free(NULL, 4096);  // a no-op
}

static void test_sizes(void) {
    size_t sizes[] = {1, 2048, 3000, 4096, 8192, 12000, 16384, 16385, 65536, 200000, 1 << 20};
    void *keep[sizeof sizes / sizeof *sizes];
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = rounded(sizes[k]);
        unsigned char *lo = gomalloc_stack_alloc(sizes[k]);
        CHECKF(lo != NULL, "stack of %zu", sizes[k]);
        size_t g = gomalloc_stack_guard_size(n);
        CHECKF(((uintptr_t)lo % (n < 8192 ? n : 8192)) == 0, "%p not aligned for %zu", (void *)lo, n);
        fill(lo + g, n - g, (unsigned)k);
        keep[k] = lo;
    }
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = rounded(sizes[k]);
        size_t g = gomalloc_stack_guard_size(n);
        CHECKF(holds((unsigned char *)keep[k] + g, n - g, (unsigned)k), "stack %zu overwritten", k);
        gomalloc_stack_free(keep[k], sizes[k]);
    }
}

// MARK: - Threads handing stacks to each other

#define THREADS 6
#define SLOTS 64
static struct { pthread_mutex_t lock; void *lo[SLOTS]; size_t size[SLOTS]; unsigned seed[SLOTS]; } shared = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};

static void *worker(void *arg) {
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    for (int round = 0; round < 4000; round++) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        size_t n = (size_t)2048 << (rng % 6);  // 2 KiB ... 64 KiB
        size_t g = gomalloc_stack_guard_size(n);
        unsigned seed = (unsigned)(rng >> 32);
        unsigned char *lo = gomalloc_stack_alloc(n);
        CHECK(lo != NULL);
        fill(lo + g, 256, seed);
        fill(lo + n - 256, 256, seed + 1);
        // Swap it into a random slot; whatever was there is checked and freed by us.
        int k = (int)((rng >> 8) % SLOTS);
        pthread_mutex_lock(&shared.lock);
        void *old = shared.lo[k];
        size_t oldn = shared.size[k];
        unsigned olds = shared.seed[k];
        shared.lo[k] = lo; shared.size[k] = n; shared.seed[k] = seed;
        pthread_mutex_unlock(&shared.lock);
        if (old) {
            size_t og = gomalloc_stack_guard_size(oldn);
            CHECK(holds((unsigned char *)old + og, 256, olds));
            CHECK(holds((unsigned char *)old + oldn - 256, 256, olds + 1));
            gomalloc_stack_free(old, oldn);
        }
    }
    return NULL;
}

/// A child forked while the workers trade stacks: every stack lock and P must be free in it,
/// so it can allocate and free stacks of every size and exit normally.
static void fork_while_trading(void) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 200; i++) {
            size_t n = (size_t)2048 << (i % 7);
            void *lo = gomalloc_stack_alloc(n);
            if (!lo) _exit(3);
            memset((char *)lo + gomalloc_stack_guard_size(n), i, 64);
            gomalloc_stack_free(lo, n);
        }
        malloc_trim(0);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child forked mid-trade: status %d", status);
}

static void test_threads(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0);
    for (int i = 0; i < 5; i++) fork_while_trading();
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int k = 0; k < SLOTS; k++)
        if (shared.lo[k]) gomalloc_stack_free(shared.lo[k], shared.size[k]);
}

static void test_grow(void) {
    size_t n = 4096, used = 3000;
    unsigned char *lo = gomalloc_stack_alloc(n);
    CHECK(lo != NULL);
    fill(lo + n - used, used, 7);
    errno = 0;
    CHECK(gomalloc_stack_grow(lo, n, n + 1) == NULL && errno == EINVAL);  // old one untouched
    CHECK(holds(lo + n - used, used, 7));
    for (int i = 0; i < 6; i++) {  // 4 KiB -> 256 KiB, through stackLarge
        unsigned char *nlo = gomalloc_stack_grow(lo, n, used);
        CHECK(nlo != NULL);
        n *= 2;
        CHECKF(holds(nlo + n - used, used, 7), "grown to %zu", n);
        lo = nlo;
    }
    gomalloc_stack_free(lo, n);
}

// MARK: - A coroutine on a GoMalloc stack

static ucontext_t main_ctx, co_ctx;
static volatile int co_steps;

static int deep(int d) {
    volatile char frame[512];
    memset((char *)frame, d, sizeof frame);
    int r = d > 0 ? deep(d - 1) : 0;
    return r + frame[d % 512];
}

static void coroutine(void) {
    for (int i = 0; i < 5; i++) {
        co_steps += deep(20) >= 0;
        swapcontext(&co_ctx, &main_ctx);
    }
}

static void test_coroutine(void) {
    size_t n = 65536;
    void *lo = gomalloc_stack_alloc(n);
    CHECK(lo != NULL);
    size_t g = gomalloc_stack_guard_size(n);
    CHECK(getcontext(&co_ctx) == 0);
    co_ctx.uc_stack.ss_sp = (char *)lo + g;
    co_ctx.uc_stack.ss_size = n - g;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, coroutine, 0);
    for (int i = 0; i < 6; i++) CHECK(swapcontext(&main_ctx, &co_ctx) == 0);
    CHECK(co_steps == 5);
    gomalloc_stack_free(lo, n);
}

// MARK: - Children that must die

/// Run `fn(arg)` in a child; returns its wait status and what it wrote to stderr.
static int in_child(void (*fn)(void *), void *arg, char *err, size_t errlen) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < errlen && (r = read(fds[0], err + got, errlen - 1 - got)) > 0) got += (size_t)r;
    err[got] = 0;
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

static void free_stack_with_free(void *lo) { free(lo); }
static void free_stack_twice(void *lo) { gomalloc_stack_free(lo, 8192); gomalloc_stack_free(lo, 8192); }
static void write_guard(void *lo) { *(volatile char *)lo = 1; }
static void write_above_guard(void *lo) { *(volatile char *)((char *)lo + gomalloc_stack_guard_size(65536)) = 1; }

static void test_misuse(void) {
    char err[256], want[256];
    void *lo = gomalloc_stack_alloc(8192);
    CHECK(lo != NULL);
    int st = in_child(free_stack_with_free, lo, err, sizeof err);
    snprintf(want, sizeof want, "gomalloc: free(): invalid pointer %p\n", lo);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strcmp(err, want) == 0, "free of a stack: %s", err);
    st = in_child(free_stack_twice, lo, err, sizeof err);
    snprintf(want, sizeof want, "gomalloc: stack_free(): invalid stack %p\n", lo);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strcmp(err, want) == 0, "double stack_free: %s", err);
    gomalloc_stack_free(lo, 8192);
}

static void test_guard(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    CHECKF(gomalloc_stack_guard_size(65536) == page, "guard of a 64 KiB stack: %zu", gomalloc_stack_guard_size(65536));
    CHECK(gomalloc_stack_guard_size(16384) == 0);  // small stacks have none
    char err[256];
    for (int round = 0; round < 2; round++) {  // a fresh span, then one reused from stackLarge
        void *lo = gomalloc_stack_alloc(65536);
        CHECK(lo != NULL);
        int st = in_child(write_guard, lo, err, sizeof err);
        CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "a write to the guard page did not fault (status %d)", st);
        st = in_child(write_above_guard, lo, err, sizeof err);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the page above the guard is not writable (status %d)", st);
        gomalloc_stack_free(lo, 65536);
    }
    // Trim gives the stacks back to the heap with their guards lifted: the memory is
    // ordinary heap memory again.
    malloc_trim(0);
    for (int i = 0; i < 64; i++) {
        unsigned char *p = malloc(65536);
        CHECK(p != NULL);
        memset(p, 1, 65536);
        free(p);
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECKF(gomalloc_stack_alloc != NULL, "the GoMalloc library is not loaded");
    test_errors();
    test_sizes();
    test_threads();
    test_grow();
    test_coroutine();
    test_misuse();
    const char *guard = getenv("GOMALLOC_STACK_GUARD");
    if (guard && strcmp(guard, "1") == 0) test_guard();
    else CHECK(gomalloc_stack_guard_size(65536) == 0);
    printf("OK stacks\n");
    return 0;
}
