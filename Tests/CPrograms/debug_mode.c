// debug_mode.c — GOMALLOC_DEBUG=1, the hardened mode (run with it set).
//
// Usage: debug_mode MODE
//   clean      a mixed workload (sizes 1 B - 1 MiB, calloc, realloc up and down, frees from
//              other threads) that never misbehaves: every byte read back, calloc zeroed,
//              realloc keeps contents, a large block usable up to malloc_usable_size;
//   uaf        a 64-byte block freed, then written at byte 10, then malloc(64) until the
//              block comes back: must abort with
//              `gomalloc: malloc(): write after free 0x<block> (byte 10)`;
//   overrun    a write one byte past malloc_usable_size of a 100000-byte block: must be
//              killed by SIGSEGV (the guard page), never return.
// Before the bad access the program prints `addr 0x...` (the block) and flushes. Prints
// `OK debug_mode` when a mode returns (clean only).
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <string.h>

#include "check.h"

#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wuse-after-free"

enum { SLOTS = 512 };
static unsigned char *handoff[4][SLOTS];

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static void verify(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) CHECKF(p[i] == (unsigned char)(seed + i * 7), "byte %zu of %p", i, (void *)p);
}

static size_t size_for(unsigned r) {
    switch (r % 8) {
    case 0: return 1 + r % 8;
    case 1: case 2: case 3: return 16 + r % 240;
    case 4: case 5: return 256 + r % 4000;
    case 6: return 4096 + r % 28000;
    default: return 40000 + r % 300000;
    }
}

static void *freer(void *arg) {
    unsigned char **slots = arg;
    for (int i = 0; i < SLOTS; i++) {
        verify(slots[i], malloc_usable_size(slots[i]) < 64 ? malloc_usable_size(slots[i]) : 64, (unsigned)i);
        free(slots[i]);
    }
    return NULL;
}

static void clean(void) {
    unsigned r = 12345;
    static unsigned char *live[SLOTS];
    static size_t sizes[SLOTS];
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < SLOTS; i++) {
            r = r * 1103515245u + 12345u;
            if (live[i]) {
                verify(live[i], sizes[i], (unsigned)i);
                if (r % 3 == 0) {
                    size_t n = size_for(r >> 8);
                    unsigned char *q = realloc(live[i], n);
                    CHECK(q != NULL);
                    verify(q, n < sizes[i] ? n : sizes[i], (unsigned)i);
                    live[i] = q;
                    sizes[i] = n;
                    fill(q, n, (unsigned)i);
                    continue;
                }
                free(live[i]);
                live[i] = NULL;
            }
            size_t n = size_for(r >> 8);
            if (r % 5 == 0) {
                live[i] = calloc(1, n);
                CHECK(live[i] != NULL);
                for (size_t k = 0; k < n; k++) CHECKF(live[i][k] == 0, "calloc byte %zu", k);
            } else {
                live[i] = malloc(n);
                CHECK(live[i] != NULL);
            }
            sizes[i] = n;
            fill(live[i], n, (unsigned)i);
        }
        // Blocks freed by other threads (the remote path poisons them too).
        pthread_t t[4];
        for (int k = 0; k < 4; k++) {
            for (int i = 0; i < SLOTS; i++) {
                handoff[k][i] = malloc(opaque(size_for((unsigned)(i * 31 + k))));
                CHECK(handoff[k][i] != NULL);
                size_t n = malloc_usable_size(handoff[k][i]);
                fill(handoff[k][i], n < 64 ? n : 64, (unsigned)i);
            }
            CHECK(pthread_create(&t[k], NULL, freer, handoff[k]) == 0);
        }
        for (int k = 0; k < 4; k++) pthread_join(t[k], NULL);
    }
    // A large block is usable up to its usable size, and comes back after a free.
    unsigned char *big = malloc(opaque(100000));
    size_t usable = malloc_usable_size(big);
    CHECK(usable >= 100000);
    memset(big, 0x5A, usable);
    free(big);
    big = malloc(opaque(100000));
    memset(big, 0x5B, malloc_usable_size(big));
    free(big);
    for (int i = 0; i < SLOTS; i++) free(live[i]);
}

int main(int argc, char **argv) {
    CHECKF(argc == 2, "usage: debug_mode MODE");
    const char *mode = argv[1];
    if (strcmp(mode, "clean") == 0) {
        clean();
    } else if (strcmp(mode, "uaf") == 0) {
        char *p = malloc(opaque(64));
        CHECK(p != NULL);
        memset(p, 1, 64);
        printf("addr %p\n", (void *)p);
        fflush(stdout);
        free(p);
        p[10] = 42;  // the bug
        for (int i = 0; i < 100000; i++) {
            char *q = malloc(opaque(64));
            if (q == p) break;
        }
        return 3;  // handed back unchecked, or never handed back
    } else if (strcmp(mode, "overrun") == 0) {
        unsigned char *p = malloc(opaque(100000));
        CHECK(p != NULL);
        size_t usable = malloc_usable_size(p);
        memset(p, 1, usable);
        printf("addr %p\n", (void *)p);
        fflush(stdout);
        ((volatile unsigned char *)p)[usable] = 1;  // the bug
        return 3;
    } else {
        CHECKF(0, "unknown mode %s", mode);
    }
    printf("OK debug_mode\n");
    return 0;
}
