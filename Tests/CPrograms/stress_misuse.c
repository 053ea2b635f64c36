// stress_misuse.c — bad frees that a sweep can hide: they must be reported at once.
//
// Usage: stress_misuse MODE [handler] (run under GoMalloc with GOMALLOC_MAXPROCS=1), MODE one of
//   late-double-free       free a small block, let a sweep merge that free, free it again
//                          (the span is the one this P allocates from: the free fast path)
//   free-unallocated-slot  free the start of a slot of our span that was never handed out
//   remote-late-double-free  the same as late-double-free for a span sitting in mcentral
//                          (malloc_trim uncaches every span: frees go the remote way)
// Before the bad call the program prints `addr 0x...`; GoMalloc must then abort (SIGABRT)
// after one line `gomalloc: free(): double free 0x...` (or `invalid pointer`). If the bad
// call returns, the program shows what the unnoticed free leads to — the slot is handed out
// while still in use — prints `unnoticed` (and `DOUBLE USE` if it got that far) and exits 3.
// Exit 4: the allocator did not lay out the blocks as this program expects (not GoMalloc?).
// With `handler`, a SIGABRT handler mallocs and frees, prints `handler malloc ok` and exits 7:
// the report must come after the allocator let go of its P and locks (with one P, a report
// made while holding it would leave the handler's malloc waiting for ever; alarm(20) ends it).
//
// The blocks are of the 640-byte class (12 per one-page span), which nothing else in the
// process uses, so the first one starts a fresh span and the rest follow it in order.
#define _GNU_SOURCE
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

enum { SIZE = 600, CLASS = 640 };

static void announce(const void *p) {
    printf("addr %p\n", p);
    fflush(stdout);
}

static void expect(int cond, const char *what) {
    if (!cond) {
        printf("layout: %s\n", what);
        exit(4);
    }
}

/// After an unnoticed bad free of `bad`: allocate until `bad` comes back, keep it, then
/// force a sweep and allocate again. A second handout of the same slot is a double use.
static void show_consequence(char *bad) {
    printf("unnoticed\n");
    fflush(stdout);
    char *held = NULL;
    for (int i = 0; i < 64 && held == NULL; i++) {
        char *p = malloc(opaque(SIZE));
        if (p == bad) held = p;
    }
    if (held == NULL) exit(3);
    memset(held, 0x5A, SIZE);
    malloc_trim(0);  // sweeps every span: the bogus free bit is merged now
    for (int i = 0; i < 64; i++) {
        char *p = malloc(opaque(SIZE));
        if (p == held) {
            printf("DOUBLE USE %p\n", (void *)p);
            exit(3);
        }
    }
    exit(3);
}

static void on_abort(int sig) {
    (void)sig;
    void *p = malloc(opaque(100));
    if (p != NULL) {
        memset(p, 1, 100);
        free(p);
        static const char ok[] = "handler malloc ok\n";
        write(1, ok, sizeof ok - 1);
    }
    _exit(7);
}

int main(int argc, char **argv) {
    CHECKF(argc == 2 || (argc == 3 && strcmp(argv[2], "handler") == 0), "usage: stress_misuse MODE [handler]");
    const char *mode = argv[1];
    if (argc == 3) {
        signal(SIGABRT, on_abort);
        alarm(20);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *x[6];
    for (int i = 0; i < 6; i++) x[i] = malloc(opaque(SIZE));
    expect(malloc_usable_size(x[0]) == CLASS, "not the 640-byte class");
    for (int i = 1; i < 6; i++) expect(x[i] == x[0] + i * CLASS, "blocks not consecutive");

    if (strcmp(mode, "late-double-free") == 0) {
        free(x[1]);
        free(x[2]);
        malloc_trim(0);                   // sweep: slots 1 and 2 are free in allocBits
        char *z = malloc(opaque(SIZE));   // the span comes back to our cache: slot 1
        expect(z == x[1], "slot 1 not reused first");
        announce(x[2]);
        free(x[2]);  // slot 2 is free and not handed out since the sweep
        show_consequence(x[2]);
    } else if (strcmp(mode, "free-unallocated-slot") == 0) {
        char *never = x[5] + CLASS;       // slot 6: past everything handed out
        announce(never);
        free(never);
        show_consequence(never);
    } else if (strcmp(mode, "remote-late-double-free") == 0) {
        malloc_trim(0);  // the span leaves our cache: every free below is remote
        free(x[2]);
        malloc_trim(0);  // mcentral sweeps it
        announce(x[2]);
        free(x[2]);
        show_consequence(x[2]);
    } else {
        CHECKF(0, "unknown mode %s", mode);
    }
    return 3;
}
