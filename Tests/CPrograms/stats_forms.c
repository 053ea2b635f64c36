// stats_forms.c — the statistics in their C forms: malloc_info(3) and gomalloc_stats_json.
//
// Holds blocks of several sizes and a large one, then:
//   * malloc_info(1, fp) is refused: glibc 2.36 returns EINVAL (the value, not -1) and
//     writes nothing; under GoMalloc errno is EINVAL as well;
//   * prints malloc_info(0, stdout) between the lines `--- malloc_info` and `--- end` (the
//     test parses it as XML);
//   * with GoMalloc (gomalloc_stats_json found by dlsym), checks snprintf's contract — (NULL,
//     0) gives the length, a buffer of length + 1 takes it all, a short buffer gets a
//     truncated, NUL-terminated prefix and the same return value — and prints the JSON on a
//     line `json <text>` (the test parses it).
// Prints `OK stats_forms`.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <string.h>

#include "check.h"

int main(void) {
    const char *expect = getenv("GOMALLOC_TEST_EXPECT_GOMALLOC");
    int gomalloc = expect && strcmp(expect, "1") == 0;
    static void *held[400];
    for (int i = 0; i < 400; i++) held[i] = malloc(opaque((size_t)(i % 8) * 40 + 8));
    void *large = malloc(opaque(1 << 20));
    memset(large, 1, 1 << 20);
    for (int i = 0; i < 400; i += 3) free(held[i]);

    FILE *null = fopen("/dev/null", "w");
    CHECK(null != NULL);
    errno = 0;
    int r = malloc_info(1, null);
    CHECKF(r == EINVAL, "malloc_info(1, fp) = %d", r);
    if (gomalloc) CHECKF(errno == EINVAL, "errno %d after malloc_info(1, fp)", errno);
    fclose(null);

    printf("--- malloc_info\n");
    fflush(stdout);
    CHECK(malloc_info(0, stdout) == 0);
    fflush(stdout);
    printf("--- end\n");

    size_t (*json)(char *, size_t) = (size_t(*)(char *, size_t))dlsym(RTLD_DEFAULT, "gomalloc_stats_json");
    CHECKF(!gomalloc || json != NULL, "gomalloc_stats_json does not resolve");
    if (json) {
        size_t n = json(NULL, 0);
        CHECKF(n > 100, "gomalloc_stats_json(NULL, 0) = %zu", n);
        char *buf = malloc(n + 64);
        // Nothing allocates between the calls but these: the same size class each time.
        size_t m = json(buf, n + 64);
        CHECKF(strlen(buf) == m && buf[0] == '{' && buf[m - 1] == '}', "full: %zu %s", m, buf);
        char small[16];
        memset(small, 'x', sizeof small);
        size_t k = json(small, 10);
        CHECKF(k == m, "short buffer: %zu, full %zu", k, m);
        CHECKF(small[9] == 0 && strlen(small) == 9 && memcmp(small, buf, 9) == 0 && small[10] == 'x',
               "short buffer: %.16s", small);
        char one = 'x';
        CHECKF(json(&one, 1) == m && one == 0, "len 1: only the NUL");
        printf("json %s\n", buf);
        free(buf);
    }
    for (int i = 0; i < 400; i++)
        if (i % 3 != 0) free(held[i]);
    free(large);
    printf("OK stats_forms\n");
    return 0;
}
