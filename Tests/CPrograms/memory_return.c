// memory_return.c — memory going back to the OS: malloc_trim, the background scavenger, the
// GOMALLOC_SCAVENGE modes and the memory limit, checked against the kernel's own count.
//
// Each mode grows a fragmented heap of `BLOCKS` 4 KiB blocks (256 MiB, every byte written),
// frees all but one block in 256, and then:
//   trim   malloc_trim(0): every free page released (HeapIdle == HeapReleased), and the
//          resident bytes of our arenas in /proc/self/smaps equal HeapInuse + StackInuse
//          (before the trim: HeapSys + StackInuse - HeapReleased);
//   idle   no heap call at all: waits (polling the statistics, at most 30 s) until the
//          background thread has released every free page, then the same smaps check, RSS
//          within 40 MiB of the start, the thread named gomalloc-scav, its bytes counted;
//   fork   as idle in a forked child, which starts without the parent's thread and gets
//          its own on its next allocation;
//   small  a 16 MiB heap: no thread;
//   off    (GOMALLOC_SCAVENGE=off) nothing released, no thread, until malloc_trim;
//   eager  (GOMALLOC_SCAVENGE=eager) every free page released by the frees themselves (but
//          the Ps' page caches, at most 64 pages each);
//   limit  (GOMALLOC_MEMORY_LIMIT=64M) 96 MiB live succeeds, the hit is counted, and after
//          the frees the resident heap is back under the limit without a trim.
// Under glibc (GOMALLOC_TEST_PRELOAD=glibc) only the allocation pattern runs.
// Prints `OK memory_return`.
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

enum { BLOCKS = 1 << 16, BLOCK = 4096, KEEP_EVERY = 256 };
static char *blocks[BLOCKS];
static size_t (*stats_json)(char *, size_t);
static char json[64 << 10];
static char text[8 << 20];  // /proc/self/smaps

/// A statistic from gomalloc_stats_json (formatted into a static buffer: no heap call).
static unsigned long long stat(const char *name) {
    CHECK(stats_json(json, sizeof json) < sizeof json);
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(json, key);
    CHECKF(p != NULL, "%s not in the statistics", name);
    return strtoull(p + strlen(key), NULL, 10);
}

static size_t read_file(const char *path) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, text + n, sizeof text - 1 - n)) > 0) n += (size_t)r;
    close(fd);
    text[n] = 0;
    return n;
}

static long rss_kib(void) { return proc_status_field("VmRSS:"); }
static long threads(void) { return proc_status_field("Threads:"); }

/// Resident bytes of the mappings overlapping [lo, hi) (our arenas), from smaps.
static unsigned long long arena_rss(unsigned long lo, unsigned long hi) {
    read_file("/proc/self/smaps");
    unsigned long long rss = 0;
    int inside = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2) inside = a < hi && b > lo;
        else if (inside && strncmp(line, "Rss:", 4) == 0) rss += strtoull(line + 4, NULL, 10) << 10;
        if (!end) break;
        line = end + 1;
    }
    return rss;
}

static unsigned long lo_addr, hi_addr;

static void grow_and_fragment(int blocks_count) {
    lo_addr = ~0ul;
    hi_addr = 0;
    for (int i = 0; i < blocks_count; i++) {
        blocks[i] = malloc(opaque(BLOCK));
        CHECK(blocks[i] != NULL);
        memset(blocks[i], i & 0xff, BLOCK);
        unsigned long a = (unsigned long)blocks[i];
        if (a < lo_addr) lo_addr = a;
        if (a > hi_addr) hi_addr = a;
    }
    lo_addr &= ~((64ul << 20) - 1);
    hi_addr = (hi_addr + (64ul << 20)) & ~((64ul << 20) - 1);
    for (int i = 0; i < blocks_count; i++) {
        if (i % KEEP_EVERY == 0) continue;
        free(blocks[i]);
        blocks[i] = NULL;
    }
}

static void check_survivors(void) {
    for (int i = 0; i < BLOCKS; i += KEEP_EVERY) {
        if (!blocks[i]) continue;
        for (int j = 0; j < BLOCK; j += 512) CHECKF((unsigned char)blocks[i][j] == (i & 0xff), "block %d", i);
    }
}

/// smaps and the statistics agree: what is resident in our arenas is what is in use and the
/// free pages not released (every page was written while in use). 2 MiB of slack: spans
/// made but never filled, the tail of the last chunk.
static void check_smaps_agree(void) {
    unsigned long long inuse = stat("HeapInuse") + stat("StackInuse");
    unsigned long long resident_free = stat("HeapIdle") - stat("HeapReleased");
    unsigned long long rss = arena_rss(lo_addr, hi_addr);
    unsigned long long expect = inuse + resident_free;
    CHECKF(rss <= expect + (256 << 10) && rss + (2 << 20) >= expect,
           "arenas resident %llu, statistics say %llu in use + %llu free resident", rss, inuse, resident_free);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/// Poll, without any heap call, until every free page is released; at most 30 s.
static void wait_for_release(void) {
    for (int i = 0; i < 1500; i++) {
        if (stat("HeapIdle") == stat("HeapReleased")) return;
        sleep_ms(20);
    }
    CHECKF(0, "free pages still resident after 30 s idle: HeapIdle %llu HeapReleased %llu",
           stat("HeapIdle"), stat("HeapReleased"));
}

static int thread_named_scavenger(void) {
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[128];
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        read_file(path);
        if (strcmp(text, "gomalloc-scav\n") == 0) found = 1;
    }
    closedir(d);
    return found;
}

static void idle_return(long start_kib) {
    CHECKF(threads() == 2, "threads %ld: the scavenger should run", threads());
    CHECK(stat("ScavengerThread") == 1);
    wait_for_release();
    check_smaps_agree();
    long rss = rss_kib();
    CHECKF(rss <= start_kib + (40 << 10), "RSS %ld KiB after idle, %ld KiB at the start", rss, start_kib);
    CHECK(stat("ScavengerBackgroundReleasedBytes") > 0);
    check_survivors();
    CHECK(thread_named_scavenger());
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    const char *mode = argv[1];
    printf("memory_return %s\n", mode);  // stdout's buffer is allocated now, not later
    fflush(stdout);
    stats_json = (size_t (*)(char *, size_t))dlsym(RTLD_DEFAULT, "gomalloc_stats_json");
    long start = rss_kib();

    if (strcmp(mode, "small") == 0) {
        grow_and_fragment(BLOCKS / 16);
        if (stats_json) {
            CHECKF(threads() == 1, "a 16 MiB heap started a thread (%ld threads)", threads());
            CHECK(stat("ScavengerThread") == 0);
        }
    } else if (strcmp(mode, "limit") == 0) {
        enum { N = 96 * 16 };  // 96 MiB of 64 KiB blocks, live at once
        static char *big[N];
        for (int i = 0; i < N; i++) {
            big[i] = malloc(opaque(64 << 10));
            CHECK(big[i] != NULL);  // soft: past the limit allocation still succeeds
            memset(big[i], 7, 64 << 10);
        }
        if (stats_json) {
            CHECK(stat("MemoryLimit") == 64ull << 20);
            CHECKF(stat("MemoryLimitHits") >= 1, "hits %llu", stat("MemoryLimitHits"));
        }
        for (int i = 0; i < N; i++) {
            if (i % 4 == 0) continue;
            free(big[i]);
            big[i] = NULL;
        }
        if (stats_json) {
            unsigned long long resident = stat("HeapSys") + stat("StackInuse") - stat("HeapReleased") + stat("MetadataSys");
            CHECKF(resident <= 64ull << 20, "resident heap %llu after the frees, limit 64 MiB", resident);
        }
        for (int i = 0; i < N; i += 4) CHECK(big[i][12345] == 7);
    } else {
        grow_and_fragment(BLOCKS);
        if (!stats_json) {
            check_survivors();
        } else if (strcmp(mode, "trim") == 0) {
            check_smaps_agree();
            malloc_trim(0);
            CHECK(stat("HeapIdle") == stat("HeapReleased"));
            check_smaps_agree();
            long rss = rss_kib();
            CHECKF(rss <= start + (40 << 10), "RSS %ld KiB after malloc_trim, %ld KiB at the start", rss, start);
            check_survivors();
        } else if (strcmp(mode, "idle") == 0) {
            idle_return(start);
        } else if (strcmp(mode, "fork") == 0) {
            CHECK(threads() == 2);
            fflush(stdout);
            pid_t pid = fork();
            CHECK(pid >= 0);
            if (pid == 0) {
                CHECKF(threads() == 1, "child threads %ld", threads());
                CHECK(stat("ScavengerThread") == 0);
                // Its own allocation starts its own thread (lazily, on the slow path).
                char *p = malloc(opaque(1 << 20));
                CHECK(p != NULL);
                memset(p, 3, 1 << 20);
                free(p);
                idle_return(start);
                _exit(0);
            }
            int status = 0;
            CHECK(waitpid(pid, &status, 0) == pid);
            CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
            CHECK(threads() == 2);
            check_survivors();
        } else if (strcmp(mode, "off") == 0) {
            CHECK(threads() == 1);
            CHECK(stat("ScavengerThread") == 0);
            // (HeapReleased also counts pages never touched: the scavenger's own count.)
            CHECKF(stat("ScavengerReleasedBytes") == 0, "released %llu with GOMALLOC_SCAVENGE=off",
                   stat("ScavengerReleasedBytes"));
            malloc_trim(0);
            CHECK(stat("HeapIdle") == stat("HeapReleased"));
            check_survivors();
        } else if (strcmp(mode, "eager") == 0) {
            CHECK(threads() == 1);
            // Free pages all released but those the Ps' page caches hold (64 pages each).
            CHECKF(stat("HeapIdle") - stat("HeapReleased") <= stat("Ps") * (512 << 10),
                   "HeapIdle %llu HeapReleased %llu", stat("HeapIdle"), stat("HeapReleased"));
            check_smaps_agree();
            check_survivors();
        } else {
            CHECKF(0, "unknown mode %s", mode);
        }
    }
    printf("OK memory_return\n");
    return 0;
}
