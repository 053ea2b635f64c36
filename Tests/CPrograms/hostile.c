// hostile.c — every exported entry point handed bad arguments, one case at a time.
//
// Each case runs in a forked child (so a case that aborts takes only itself down); the
// parent prints one line per case:
//     <case> | <outcome>
// where the outcome is what happened, written the same way whatever the allocator:
//     ptr                      a non-NULL pointer (aligned as asked where the case asks)
//     ptr misaligned           a non-NULL pointer that is not aligned as asked
//     NULL                     NULL with errno unchanged
//     NULL ENOMEM / NULL EINVAL  NULL with that errno
//     0 / EINVAL / ENOMEM      an int result (posix_memalign), or a size (malloc_usable_size)
//     ok                       returned (void functions)
//     abort: <first line>      SIGABRT; the first line it wrote to stderr, with hex addresses
//                              replaced by 0x…
//     signal N                 killed by another signal (a crash)
// The test (HostileInputTests) runs it under GoMalloc and under glibc and compares both
// columns with README.md's table. Prints `OK hostile` last.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wnonnull"

static char global_buffer[64];

/// Hide a pointer from the optimiser (GCC knows what free of a stack address means).
static void *opaque_ptr(void *p) {
    void *volatile v = p;
    return v;
}
static int out_fd = 1;

/// Write the outcome line for a case that returned (child side, through the pipe).
static void say(const char *text) {
    write(out_fd, text, strlen(text));
    _exit(0);
}

static void say_ptr(void *p, size_t align) {
    if (!p) {
        if (errno == ENOMEM) say("NULL ENOMEM");
        if (errno == EINVAL) say("NULL EINVAL");
        say("NULL");
    }
    if (align && ((uintptr_t)p & (align - 1)) != 0) say("ptr misaligned");
    say("ptr");
}

static void say_int(int r) {
    if (r == 0) say("0");
    if (r == EINVAL) say("EINVAL");
    if (r == ENOMEM) say("ENOMEM");
    say("other");
}

static void *live(size_t n) {
    void *p = malloc(opaque(n));
    CHECK(p != NULL);
    memset(p, 1, n);
    return p;
}

static void *freed(size_t n) {
    void *p = live(n);
    free(p);
    return p;
}

typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

/// Run case `name` (child side): errno is 0 before the call.
static void run_case(const char *name) {
    errno = 0;
    size_t huge = opaque(SIZE_MAX);
    void *p = NULL;
#define CASE(n) if (strcmp(name, n) == 0)
    CASE("malloc(0)") say_ptr(malloc(opaque(0)), 0);
    CASE("malloc(SIZE_MAX)") say_ptr(malloc(huge), 0);
    CASE("malloc(PTRDIFF_MAX + 1)") say_ptr(malloc(opaque((size_t)PTRDIFF_MAX + 1)), 0);
    CASE("malloc(1 << 47)") say_ptr(malloc(opaque((size_t)1 << 47)), 0);
    CASE("calloc(SIZE_MAX / 2, 3)") say_ptr(calloc(huge / 2, opaque(3)), 0);
    CASE("calloc(0, 16)") say_ptr(calloc(opaque(0), 16), 0);
    CASE("calloc(1 << 32, 1 << 32)") say_ptr(calloc(opaque((size_t)1 << 32), opaque((size_t)1 << 32)), 0);
    CASE("realloc(NULL, 16)") say_ptr(realloc(NULL, opaque(16)), 0);
    CASE("realloc(p, 0)") { p = live(16); say_ptr(realloc(p, opaque(0)), 0); }
    CASE("realloc(p, SIZE_MAX)") {
        p = live(16);
        void *q = realloc(p, huge);
        if (!q) CHECK(((char *)p)[15] == 1);  // the old block is intact
        say_ptr(q, 0);
    }
    CASE("reallocarray(p, SIZE_MAX, 2)") { p = live(16); say_ptr(reallocarray(p, huge, 2), 0); }
    CASE("reallocarray(NULL, 0, 0)") say_ptr(reallocarray(NULL, opaque(0), 0), 0);
    CASE("free(NULL)") { free(NULL); say("ok"); }
    CASE("free(stack)") { char local[32]; memset(local, 0, sizeof local); free(opaque_ptr(local)); say("ok"); }
    CASE("free(global)") { free(opaque_ptr(global_buffer)); say("ok"); }
    CASE("free(mmap page)") {
        void *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(m != MAP_FAILED);
        free((char *)m + 4096);
        say("ok");
    }
    CASE("free(p + 16)") { p = live(64); free((char *)p + 16); say("ok"); }
    CASE("free(p + 1)") { p = live(64); free((char *)p + 1); say("ok"); }
    CASE("free(large p + 4096)") { p = live(1 << 20); free((char *)p + 4096); say("ok"); }
    CASE("double free(small)") { p = live(32); void *keep = live(32); free(p); free(p); (void)keep; say("ok"); }
    CASE("double free(large)") { p = live(1 << 20); free(p); free(p); say("ok"); }
    CASE("realloc(freed, 64)") { p = freed(1 << 20); say_ptr(realloc(p, opaque(64)), 0); }
    CASE("realloc(stack, 64)") { char local[32]; say_ptr(realloc(opaque_ptr(local), opaque(64)), 0); }
    CASE("free_sized(p, wrong size)") {
        free_sized_fn f = (free_sized_fn)dlsym(RTLD_DEFAULT, "free_sized");
        if (!f) say("absent");
        p = live(64);
        f(p, 4096);
        say("ok");
    }
    CASE("free_aligned_sized(p, 64, 64)") {
        free_aligned_sized_fn f = (free_aligned_sized_fn)dlsym(RTLD_DEFAULT, "free_aligned_sized");
        if (!f) say("absent");
        p = aligned_alloc(64, 64);
        f(p, 64, 64);
        say("ok");
    }
    CASE("aligned_alloc(0, 16)") say_ptr(aligned_alloc(opaque(0), 16), 0);
    CASE("aligned_alloc(24, 48)") say_ptr(aligned_alloc(opaque(24), 48), 8);
    CASE("aligned_alloc(64, 100)") say_ptr(aligned_alloc(opaque(64), 100), 64);
    CASE("aligned_alloc(1 << 62, 16)") say_ptr(aligned_alloc(opaque((size_t)1 << 62), 16), 0);
    CASE("aligned_alloc(4096, SIZE_MAX)") say_ptr(aligned_alloc(4096, huge), 0);
    CASE("memalign(3, 16)") say_ptr(memalign(opaque(3), 16), 4);
    CASE("memalign(SIZE_MAX, 16)") say_ptr(memalign(huge, 16), 0);
    CASE("posix_memalign(0, 16)") say_int(posix_memalign(&p, opaque(0), 16));
    CASE("posix_memalign(4, 16)") say_int(posix_memalign(&p, opaque(4), 16));
    CASE("posix_memalign(24, 16)") say_int(posix_memalign(&p, opaque(24), 16));
    CASE("posix_memalign(64, SIZE_MAX)") say_int(posix_memalign(&p, 64, huge));
    CASE("posix_memalign(1 << 40, 16)") say_int(posix_memalign(&p, opaque((size_t)1 << 40), 16));
    CASE("valloc(SIZE_MAX)") say_ptr(valloc(huge), 0);
    CASE("pvalloc(SIZE_MAX)") say_ptr(pvalloc(huge), 0);
    CASE("pvalloc(0)") say_ptr(pvalloc(opaque(0)), 4096);
    CASE("malloc_usable_size(NULL)") say_int((int)malloc_usable_size(NULL));
    CASE("malloc_usable_size(stack)") {
        char local[64];
        memset(local, 0, sizeof local);
        size_t n = malloc_usable_size(opaque_ptr(local + 16));
        say(n == 0 ? "0" : "a size");
    }
    CASE("mallopt(-12345, 1)") { int r = mallopt(-12345, 1); say(r == 0 ? "0" : "1"); }
    CASE("malloc_info(1, stdout)") { int r = malloc_info(1, stdout); say_int(r); }
    CASE("malloc_trim(SIZE_MAX)") { malloc_trim(huge); say("ok"); }
    say("unknown case");
}

static const char *cases[] = {
    "malloc(0)", "malloc(SIZE_MAX)", "malloc(PTRDIFF_MAX + 1)", "malloc(1 << 47)",
    "calloc(SIZE_MAX / 2, 3)", "calloc(0, 16)", "calloc(1 << 32, 1 << 32)",
    "realloc(NULL, 16)", "realloc(p, 0)", "realloc(p, SIZE_MAX)", "reallocarray(p, SIZE_MAX, 2)",
    "reallocarray(NULL, 0, 0)",
    "free(NULL)", "free(stack)", "free(global)", "free(mmap page)", "free(p + 16)", "free(p + 1)",
    "free(large p + 4096)", "double free(small)", "double free(large)",
    "realloc(freed, 64)", "realloc(stack, 64)",
    "free_sized(p, wrong size)", "free_aligned_sized(p, 64, 64)",
    "aligned_alloc(0, 16)", "aligned_alloc(24, 48)", "aligned_alloc(64, 100)",
    "aligned_alloc(1 << 62, 16)", "aligned_alloc(4096, SIZE_MAX)",
    "memalign(3, 16)", "memalign(SIZE_MAX, 16)",
    "posix_memalign(0, 16)", "posix_memalign(4, 16)", "posix_memalign(24, 16)",
    "posix_memalign(64, SIZE_MAX)", "posix_memalign(1 << 40, 16)",
    "valloc(SIZE_MAX)", "pvalloc(SIZE_MAX)", "pvalloc(0)",
    "malloc_usable_size(NULL)", "malloc_usable_size(stack)",
    "mallopt(-12345, 1)", "malloc_info(1, stdout)", "malloc_trim(SIZE_MAX)",
};

/// Read all of fd into buf (NUL-terminated).
static void drain(int fd, char *buf, size_t cap) {
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)r;
    buf[n] = 0;
}

/// The first line of `text` with every 0x<hex> written 0x…, into out.
static void first_line_masked(const char *text, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; text[i] && text[i] != '\n' && o + 4 < cap;) {
        if (text[i] == '0' && text[i + 1] == 'x') {
            memcpy(out + o, "0x\xe2\x80\xa6", 5);  // 0x…
            o += 5;
            i += 2;
            while ((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')) i++;
            continue;
        }
        out[o++] = text[i++];
    }
    out[o] = 0;
}

int main(void) {
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int out[2], err[2];
        CHECK(pipe(out) == 0 && pipe(err) == 0);
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(out[0]);
            close(err[0]);
            dup2(err[1], 2);
            out_fd = out[1];
            run_case(cases[c]);
        }
        close(out[1]);
        close(err[1]);
        static char said[256], stderr_text[4096], masked[512];
        drain(out[0], said, sizeof said);
        drain(err[0], stderr_text, sizeof stderr_text);
        close(out[0]);
        close(err[0]);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("%s | %s\n", cases[c], said);
        } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT) {
            first_line_masked(stderr_text, masked, sizeof masked);
            printf("%s | abort: %s\n", cases[c], masked);
        } else if (WIFSIGNALED(status)) {
            printf("%s | signal %d\n", cases[c], WTERMSIG(status));
        } else {
            printf("%s | exit %d: %s\n", cases[c], WEXITSTATUS(status), stderr_text);
        }
    }
    printf("OK hostile\n");
    return 0;
}
