// common.h: helpers shared by the GoMalloc benchmark workloads (Benchmarks/workloads/*.c).
//
// Every workload is a small, self-contained C program that `gomalloc bench` compiles with
// `cc -O2 -pthread` and runs once per allocator (the system allocator, or a peer / GoMalloc
// through LD_PRELOAD). The rules that all of them follow:
//
//   * Arguments are `key=value` pairs (`threads=2 iters=100000 seed=7`); unknown keys are
//     an error, `help` prints the keys and their defaults. So a smoke run can be tiny.
//   * Deterministic: every random choice comes from a seeded splitmix64 generator, one per
//     thread, seeded from `seed` and the thread's index. (Thread interleaving is the only
//     nondeterminism, as in the originals.)
//   * Self-checking: memory is filled with a pattern derived from a per-object tag when it
//     is allocated and verified before it is freed; a mismatch prints `CORRUPTION ...` and
//     exits with status 3, so a broken allocator cannot look fast.
//   * The last stdout line is a summary `workload=NAME ... checksum=X maxrss_kib=N`.
//
// The code is ours; the shapes of the workloads follow well-known allocator benchmarks
// (see Benchmarks/README.md for which one each models).
#ifndef GOMALLOC_BENCH_COMMON_H
#define GOMALLOC_BENCH_COMMON_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

// ---- failure ---------------------------------------------------------------------------

__attribute__((noreturn, format(printf, 1, 2)))
static inline void corruption(const char *fmt, ...);

#include <stdarg.h>
static inline void corruption(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("CORRUPTION: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(3);
}

__attribute__((noreturn, format(printf, 1, 2)))
static inline void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (p == NULL) die("malloc(%zu) returned NULL", n);
    return p;
}

// ---- random numbers: splitmix64 ------------------------------------------------------

typedef struct { uint64_t state; } rng_t;

static inline uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline rng_t rng_seeded(uint64_t seed, uint64_t stream) {
    rng_t r = { seed * 0x2545F4914F6CDD1Dull + stream * 0x9E3779B97F4A7C15ull + 1 };
    (void)rng_next(&r);
    return r;
}

/// Uniform in [0, n) (n > 0), by multiply-high (no modulo bias worth mentioning here).
static inline uint64_t rng_below(rng_t *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/// Uniform in [lo, hi].
static inline uint64_t rng_range(rng_t *r, uint64_t lo, uint64_t hi) {
    return lo + rng_below(r, hi - lo + 1);
}

// ---- arguments: key=value --------------------------------------------------------------

typedef struct {
    const char *key;
    long value;
    const char *help;
} arg_t;

static inline void parse_args(const char *name, int argc, char **argv, arg_t *args, int nargs) {
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        int is_help = strcmp(argv[i], "help") == 0 || strcmp(argv[i], "--help") == 0;
        if (is_help || eq == NULL) {
            FILE *f = is_help ? stdout : stderr;
            fprintf(f, "usage: %s [key=value ...]\n", name);
            for (int k = 0; k < nargs; k++)
                fprintf(f, "  %-10s %-10ld %s\n", args[k].key, args[k].value, args[k].help);
            exit(is_help ? 0 : 2);
        }
        int found = 0;
        for (int k = 0; k < nargs; k++) {
            size_t klen = strlen(args[k].key);
            if ((size_t)(eq - argv[i]) == klen && strncmp(argv[i], args[k].key, klen) == 0) {
                char *end = NULL;
                args[k].value = strtol(eq + 1, &end, 0);
                if (end == eq + 1 || *end != '\0') die("%s: bad value in %s", name, argv[i]);
                found = 1;
            }
        }
        if (!found) die("%s: unknown argument %s (try `%s help`)", name, argv[i], name);
    }
}

static inline long arg_get(const arg_t *args, int nargs, const char *key) {
    for (int k = 0; k < nargs; k++)
        if (strcmp(args[k].key, key) == 0) return args[k].value;
    die("internal: no argument %s", key);
}

// ---- fill and verify -----------------------------------------------------------------
//
// `fill` writes 8-byte words of a pattern derived from (tag, word index); `verify` checks
// them. Which words: every word of objects up to 256 bytes; one word per 64-byte cache line
// up to 64 KiB; one word per 4 KiB page above that; plus always the first 64 bytes and the
// last word. So two live objects that overlap by a cache line are caught, large blocks are
// touched page by page (peak RSS is real), and the workloads stay allocation benchmarks
// rather than memset benchmarks.
// `stamp`/`check_stamp` write and check only the first and last 8 bytes (used by the
// malloc/free-pair microbenchmark, still catching overlapping blocks).

static inline uint64_t pattern_word(uint64_t tag, size_t word) {
    return (tag * 0x9E3779B97F4A7C15ull) ^ (word * 0xD6E8FEB86659FD93ull);
}

static inline void put_word(unsigned char *p, size_t n, size_t off, uint64_t w) {
    size_t k = n - off < 8 ? n - off : 8;
    memcpy(p + off, &w, k);
}

static inline int word_ok(const unsigned char *p, size_t n, size_t off, uint64_t w) {
    size_t k = n - off < 8 ? n - off : 8;
    return memcmp(p + off, &w, k) == 0;
}

static inline size_t fill_stride(size_t n) {
    return n <= 256 ? 8 : n <= 65536 ? 64 : 4096;
}

static inline void fill(void *ptr, size_t n, uint64_t tag) {
    unsigned char *p = (unsigned char *)ptr;
    size_t stride = fill_stride(n), off;
    for (off = 0; off < n && off < 64; off += 8) put_word(p, n, off, pattern_word(tag, off / 8));
    for (off = 64; off < n; off += stride) put_word(p, n, off, pattern_word(tag, off / 8));
    if (n > 8) put_word(p, n, (n - 8) & ~(size_t)7, pattern_word(tag, (n - 8) / 8));
}

static inline void verify(const void *ptr, size_t n, uint64_t tag, const char *what) {
    const unsigned char *p = (const unsigned char *)ptr;
    size_t stride = fill_stride(n), off;
    for (off = 0; off < n && off < 64; off += 8)
        if (!word_ok(p, n, off, pattern_word(tag, off / 8))) goto bad;
    for (off = 64; off < n; off += stride)
        if (!word_ok(p, n, off, pattern_word(tag, off / 8))) goto bad;
    if (n > 8) {
        off = (n - 8) & ~(size_t)7;
        if (!word_ok(p, n, off, pattern_word(tag, (n - 8) / 8))) goto bad;
    }
    return;
bad:
    corruption("%s: object %p of %zu bytes (tag %llx) differs at offset %zu", what, ptr, n,
               (unsigned long long)tag, off);
}

static inline void stamp(void *ptr, size_t n, uint64_t tag) {
    unsigned char *p = (unsigned char *)ptr;
    put_word(p, n, 0, pattern_word(tag, 0));
    if (n >= 16) put_word(p, n, n - 8, ~pattern_word(tag, 0));
}

static inline void check_stamp(const void *ptr, size_t n, uint64_t tag, const char *what) {
    const unsigned char *p = (const unsigned char *)ptr;
    if (!word_ok(p, n, 0, pattern_word(tag, 0)) || (n >= 16 && !word_ok(p, n, n - 8, ~pattern_word(tag, 0))))
        corruption("%s: object %p of %zu bytes (tag %llx) was overwritten", what, ptr, n,
                   (unsigned long long)tag);
}

// ---- threads, time, summary ----------------------------------------------------------

static inline void run_threads(int n, void *(*fn)(void *), void *args, size_t arg_size) {
    pthread_t *ts = (pthread_t *)xmalloc(sizeof(pthread_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        if (pthread_create(&ts[i], NULL, fn, (char *)args + (size_t)i * arg_size) != 0)
            die("pthread_create failed");
    for (int i = 0; i < n; i++) pthread_join(ts[i], NULL);
    free(ts);
}

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline long maxrss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

// ---- phase markers (workloads whose RSS `gomalloc bench` samples) -------------------

/// Resident set size in KiB from a statm file (/proc/PID/statm), with open and read only
/// (no heap call); -1 when it cannot be read.
static inline long rss_kib_from(const char *statm) {
    char buf[128];
    int fd = open(statm, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    const char *p = buf;
    while (*p && *p != ' ') p++;  // skip the total size
    long pages = strtol(p, NULL, 10);
    return pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/// This process's resident set size in KiB.
static inline long rss_now_kib(void) { return rss_kib_from("/proc/self/statm"); }

/// Prints a phase boundary `phase=NAME mono_s=S rss_kib=N` (the harness parses it: RSSSampler)
/// with the RSS given; returns it.
static inline long marker_rss(const char *phase, long rss) {
    printf("phase=%s mono_s=%.6f rss_kib=%ld\n", phase, now_seconds(), rss);
    fflush(stdout);
    return rss;
}

/// A phase boundary with this process's RSS.
static inline long marker(const char *phase) { return marker_rss(phase, rss_now_kib()); }

/// Sleeps `ms` milliseconds without a heap call.
static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        if (errno != EINTR) die("nanosleep failed");
}

/// Mixes a value into a running checksum (order-sensitive).
static inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    return h;
}

#endif
