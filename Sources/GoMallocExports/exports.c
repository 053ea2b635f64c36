// exports.c — the C allocator names of libgomalloc, forwarding to the core.
//
// Role: define malloc, free, ... and the __libc_* aliases with DEFAULT visibility, each a
//   direct tail call to the core's `gm_*` entry point (Sources/GoMallocCore/CABI.swift).
//   All semantics (errno, the NULL and 0 cases, alignment checks, bad-pointer reports) live
//   in the core; this file only gives the names.
// Go counterpart: none (Go has no C allocator interface).
// Why C and not `@c(malloc)` in Swift: Swift exports functions with PROTECTED visibility;
//   aliasing `malloc` to one makes ld.so warn "direct reference to protected function" in
//   non-PIE programs that take `&malloc` (Debian's python3.11, gcc's cc1), and Swift warns
//   that `malloc`/`free` are reserved names. A default-visibility C forwarder has neither
//   problem and compiles to a single `jmp` in optimised builds.
// Invariants:
//   I1. Every function here is one call to a gm_* function with the same arguments; nothing
//       here allocates, sets errno or branches (mallinfo's clamping excepted; malloc_info
//       writes the core's finished text with stdio, no allocator lock held).
//   I2. The exported names are exactly those in exports.map (the linker version script), and
//       the gomalloc_* ones are exactly those declared in include/gomalloc.h.
// Concurrency: stateless; thread-safety is the core's.
// Failure: as the core's entry points (NULL + errno, or abort with a one-line report).
#define _GNU_SOURCE
#include <limits.h>
#include <malloc.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "gomalloc.h"

#define GM_EXPORT __attribute__((visibility("default")))

// MARK: - The core's entry points (defined with @c(gm_...) in CABI.swift)

void *gm_malloc(size_t size);
void gm_free(void *p);
void *gm_calloc(size_t n, size_t size);
void *gm_realloc(void *p, size_t size);
void *gm_reallocarray(void *p, size_t n, size_t size);
int gm_posix_memalign(void **out, size_t alignment, size_t size);
void *gm_aligned_alloc(size_t alignment, size_t size);
void *gm_memalign(size_t alignment, size_t size);
void *gm_valloc(size_t size);
void *gm_pvalloc(size_t size);
size_t gm_malloc_usable_size(void *p);
void gm_free_sized(void *p, size_t size);
void gm_free_aligned_sized(void *p, size_t alignment, size_t size);
int gm_malloc_trim(size_t pad);
void gm_malloc_stats(void);
int gm_mallopt(int param, int value);
void gm_mallinfo_fill(size_t out[10]);
void gm_stats_print(int fd);
size_t gm_stats_json(char *buf, size_t len);
int gm_profile_dump(const char *path);
long gm_malloc_info_format(int options, char *buf, size_t len);
void *gm_stack_alloc(size_t size);
void gm_stack_free(void *lo, size_t size);
void *gm_stack_grow(void *lo, size_t size, size_t used);
size_t gm_stack_guard_size(size_t size);
void gm_library_load(void);

// GOMALLOC_STATS must print even for programs that never call malloc or that close stderr
// in their own exit handlers: register the summary when the library is loaded.
__attribute__((constructor)) static void gomalloc_library_load(void) { gm_library_load(); }

// glibc 2.36 declares neither the C23 sized frees nor the __libc_* names.
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

// MARK: - The C allocation family (glibc 2.36 semantics, implemented by the core)

// The hottest names are bare jumps written in assembly: SwiftPM compiles C with frame
// pointers, which would add a push/mov/pop to every call. Elsewhere, plain C.
#if defined(__x86_64__)
#define GM_JUMP(name, target) \
    __asm__(".text\n.globl " #name "\n.type " #name ",@function\n.p2align 4\n" #name ":\n" \
            "\tjmp " #target "\n.size " #name ", .-" #name "\n");
#elif defined(__aarch64__)
#define GM_JUMP(name, target) \
    __asm__(".text\n.globl " #name "\n.type " #name ",%function\n.p2align 4\n" #name ":\n" \
            "\tb " #target "\n.size " #name ", .-" #name "\n");
#endif

#ifdef GM_JUMP
GM_JUMP(malloc, gm_malloc)
GM_JUMP(free, gm_free)
GM_JUMP(calloc, gm_calloc)
GM_JUMP(realloc, gm_realloc)
GM_JUMP(__libc_malloc, gm_malloc)
GM_JUMP(__libc_free, gm_free)
GM_JUMP(__libc_calloc, gm_calloc)
GM_JUMP(__libc_realloc, gm_realloc)
#else
GM_EXPORT void *malloc(size_t size) { return gm_malloc(size); }
GM_EXPORT void free(void *p) { gm_free(p); }
GM_EXPORT void *calloc(size_t n, size_t size) { return gm_calloc(n, size); }
GM_EXPORT void *realloc(void *p, size_t size) { return gm_realloc(p, size); }
GM_EXPORT void *__libc_malloc(size_t size) { return gm_malloc(size); }
GM_EXPORT void __libc_free(void *p) { gm_free(p); }
GM_EXPORT void *__libc_calloc(size_t n, size_t size) { return gm_calloc(n, size); }
GM_EXPORT void *__libc_realloc(void *p, size_t size) { return gm_realloc(p, size); }
#endif
GM_EXPORT void *reallocarray(void *p, size_t n, size_t size) { return gm_reallocarray(p, n, size); }
GM_EXPORT int posix_memalign(void **out, size_t alignment, size_t size) {
    return gm_posix_memalign(out, alignment, size);
}
GM_EXPORT void *aligned_alloc(size_t alignment, size_t size) { return gm_aligned_alloc(alignment, size); }
GM_EXPORT void *memalign(size_t alignment, size_t size) { return gm_memalign(alignment, size); }
GM_EXPORT void *valloc(size_t size) { return gm_valloc(size); }
GM_EXPORT void *pvalloc(size_t size) { return gm_pvalloc(size); }
GM_EXPORT size_t malloc_usable_size(void *p) { return gm_malloc_usable_size(p); }
GM_EXPORT void free_sized(void *p, size_t size) { gm_free_sized(p, size); }
GM_EXPORT void free_aligned_sized(void *p, size_t alignment, size_t size) {
    gm_free_aligned_sized(p, alignment, size);
}

// MARK: - Introspection and tuning

GM_EXPORT struct mallinfo2 mallinfo2(void) {
    size_t f[10];
    gm_mallinfo_fill(f);
    struct mallinfo2 m = {
        .arena = f[0], .ordblks = f[1], .smblks = f[2], .hblks = f[3], .hblkhd = f[4],
        .usmblks = f[5], .fsmblks = f[6], .uordblks = f[7], .fordblks = f[8], .keepcost = f[9],
    };
    return m;
}

// mallinfo's fields are int; glibc truncates, we clamp to INT_MAX (a saturated figure is at
// least recognisable as "too big", a wrapped one is not).
static inline int gm_clamp_int(size_t v) { return v > (size_t)INT_MAX ? INT_MAX : (int)v; }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
GM_EXPORT struct mallinfo mallinfo(void) {
    size_t f[10];
    gm_mallinfo_fill(f);
    struct mallinfo m = {
        .arena = gm_clamp_int(f[0]), .ordblks = gm_clamp_int(f[1]), .smblks = gm_clamp_int(f[2]),
        .hblks = gm_clamp_int(f[3]), .hblkhd = gm_clamp_int(f[4]), .usmblks = gm_clamp_int(f[5]),
        .fsmblks = gm_clamp_int(f[6]), .uordblks = gm_clamp_int(f[7]), .fordblks = gm_clamp_int(f[8]),
        .keepcost = gm_clamp_int(f[9]),
    };
    return m;
}
#pragma GCC diagnostic pop

GM_EXPORT int malloc_trim(size_t pad) { return gm_malloc_trim(pad); }
GM_EXPORT void malloc_stats(void) { gm_malloc_stats(); }
GM_EXPORT int mallopt(int param, int value) { return gm_mallopt(param, value); }

// The core formats the document into this stack buffer (no allocation, its lock released
// before it returns); stdio, which may allocate, only sees the finished text. The document
// is at most about 7 KiB (one line per size class). glibc 2.36 returns EINVAL (not -1) for
// options != 0, without writing; errno is EINVAL too.
GM_EXPORT int malloc_info(int options, FILE *fp) {
    char buf[16384];
    long n = gm_malloc_info_format(options, buf, sizeof buf);
    if (n < 0) return EINVAL;
    fputs(buf, fp);
    return 0;
}

// MARK: - glibc's internal names
//
// Programs (and older interposers) that call glibc's allocator under these names must reach
// ours, so that no pointer from glibc's heap ever reaches our free.

GM_EXPORT void *__libc_memalign(size_t alignment, size_t size) { return gm_memalign(alignment, size); }
GM_EXPORT void *__libc_valloc(size_t size) { return gm_valloc(size); }
GM_EXPORT void *__libc_pvalloc(size_t size) { return gm_pvalloc(size); }

// MARK: - GoMalloc's own API (include/gomalloc.h)

GM_EXPORT void gomalloc_stats_print(int fd) { gm_stats_print(fd); }

GM_EXPORT size_t gomalloc_stats_json(char *buf, size_t len) { return gm_stats_json(buf, len); }
GM_EXPORT int gomalloc_profile_dump(const char *path) { return gm_profile_dump(path); }

GM_EXPORT const char *gomalloc_version(void) { return GOMALLOC_VERSION_STRING; }

GM_EXPORT void *gomalloc_stack_alloc(size_t size) { return gm_stack_alloc(size); }

GM_EXPORT void gomalloc_stack_free(void *lo, size_t size) { gm_stack_free(lo, size); }

GM_EXPORT void *gomalloc_stack_grow(void *lo, size_t size, size_t used) { return gm_stack_grow(lo, size, used); }

GM_EXPORT size_t gomalloc_stack_guard_size(size_t size) { return gm_stack_guard_size(size); }
