// stacks_demo.c — coroutines, their context switch and the stacks-demo workload. See
// stacks_demo.h for the contract.
//
// Context switch ("native"): sd_native_switch(&from_sp, to_sp, value) pushes the
// callee-saved registers on the current stack, stores the stack pointer in *from_sp, loads
// to_sp, pops that context's registers and returns `value` to it. A new context is a stack
// prepared to look like a suspended sd_native_switch whose return address is
// sd_native_trampoline, which calls entry(arg, value) with the stack 16-byte aligned at
// the call, as both ABIs require. x86-64 saves rbx, rbp, r12-r15, MXCSR and the x87
// control word; AArch64 saves x19-x30 and d8-d15. Everything else is caller-saved, so the
// C caller of the switch has already saved what it needs. Elsewhere: ucontext.
//
// Concurrency: no globals; every call keeps its state in its own scheduler, and the
// coroutines of one call run on the calling thread only.
// Failure: no aborts on bad input or exhausted memory: errors come back through the return
// value and the caller's buffer. A coroutine that finds a wrong word stops and reports it
// (without calling printf on its small stack); the scheduler formats the message and frees
// every stack still allocated. A coroutine's entry returning is a bug: it traps (ud2/brk).
#define _GNU_SOURCE 1
#include "stacks_demo.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define SD_HAVE_NATIVE 1
#else
#define SD_HAVE_NATIVE 0
#endif

#if defined(__GLIBC__)
#define SD_HAVE_UCONTEXT 1
#include <ucontext.h>
#else
#define SD_HAVE_UCONTEXT 0
#endif

#if !SD_HAVE_NATIVE && !SD_HAVE_UCONTEXT
#error "stacks-demo needs x86-64, AArch64 or glibc's ucontext"
#endif

// GoMalloc's stack allocator (the core's CABI.swift, linked into the CLI).
extern void *gm_stack_alloc(size_t size);
extern void gm_stack_free(void *lo, size_t size);

// MARK: - The native context switch

#if SD_HAVE_NATIVE
void *sd_native_switch(void **save_sp, void *to_sp, void *value) __attribute__((visibility("hidden")));
void sd_native_trampoline(void) __attribute__((visibility("hidden")));

#if defined(__x86_64__)
// rdi = save_sp, rsi = to_sp, rdx = value. The saved frame, from the saved sp upwards:
// [MXCSR (4 bytes), x87 CW (2), pad (2)] r15 r14 r13 r12 rbx rbp return-address.
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl sd_native_switch\n"
    ".hidden sd_native_switch\n"
    ".type sd_native_switch, @function\n"
    "sd_native_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    movq %rdx, %rax\n"
    "    ret\n"
    ".size sd_native_switch, .-sd_native_switch\n"
    // Entered by the ret above with r12 = entry, r13 = arg, rax = value and rsp 16-byte
    // aligned; the call pushes the return address, as a call from C would.
    ".p2align 4\n"
    ".globl sd_native_trampoline\n"
    ".hidden sd_native_trampoline\n"
    ".type sd_native_trampoline, @function\n"
    "sd_native_trampoline:\n"
    "    .cfi_startproc\n"
    "    .cfi_undefined rip\n"
    "    movq %r13, %rdi\n"
    "    movq %rax, %rsi\n"
    "    callq *%r12\n"
    "    ud2\n"
    "    .cfi_endproc\n"
    ".size sd_native_trampoline, .-sd_native_trampoline\n");

enum { SD_NATIVE_FRAME_WORDS = 8 };  // csr, r15, r14, r13, r12, rbx, rbp, return address

static void native_prepare(void **sp_out, void *lo, size_t size, void (*entry)(void *, void *), void *arg) {
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    // Two zero words at the very top (an end for anything that walks frames), then the
    // frame sd_native_switch pops: its return address sits at top - 24, so the ret leaves
    // rsp = top - 16, 16-byte aligned for the trampoline's call.
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;
    *--sp = 0;
    *--sp = (uint64_t)(uintptr_t)sd_native_trampoline;
    *--sp = 0;                            // rbp: the end of the frame-pointer chain
    *--sp = 0;                            // rbx
    *--sp = (uint64_t)(uintptr_t)entry;   // r12
    *--sp = (uint64_t)(uintptr_t)arg;     // r13
    *--sp = 0;                            // r14
    *--sp = 0;                            // r15
    // The creator's floating-point modes.
    uint32_t mxcsr;
    uint16_t fcw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fcw));
    *--sp = (uint64_t)mxcsr | ((uint64_t)fcw << 32);
    *sp_out = sp;
}

#elif defined(__aarch64__)
// x0 = save_sp, x1 = to_sp, x2 = value. The saved frame, 160 bytes from the saved sp:
// x19 x20 x21 x22 x23 x24 x25 x26 x27 x28 x29 x30 d8 d9 d10 d11 d12 d13 d14 d15.
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl sd_native_switch\n"
    ".hidden sd_native_switch\n"
    ".type sd_native_switch, %function\n"
    "sd_native_switch:\n"
    "    sub sp, sp, #160\n"
    "    stp x19, x20, [sp, #0]\n"
    "    stp x21, x22, [sp, #16]\n"
    "    stp x23, x24, [sp, #32]\n"
    "    stp x25, x26, [sp, #48]\n"
    "    stp x27, x28, [sp, #64]\n"
    "    stp x29, x30, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mov x9, sp\n"
    "    str x9, [x0]\n"
    "    mov sp, x1\n"
    "    ldp x19, x20, [sp, #0]\n"
    "    ldp x21, x22, [sp, #16]\n"
    "    ldp x23, x24, [sp, #32]\n"
    "    ldp x25, x26, [sp, #48]\n"
    "    ldp x27, x28, [sp, #64]\n"
    "    ldp x29, x30, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    add sp, sp, #160\n"
    "    mov x0, x2\n"
    "    ret\n"
    ".size sd_native_switch, .-sd_native_switch\n"
    // Entered by the ret above with x19 = entry, x20 = arg, x0 = value, sp = stack top.
    ".p2align 4\n"
    ".globl sd_native_trampoline\n"
    ".hidden sd_native_trampoline\n"
    ".type sd_native_trampoline, %function\n"
    "sd_native_trampoline:\n"
    "    .cfi_startproc\n"
    "    .cfi_undefined x30\n"
    "    mov x1, x0\n"
    "    mov x0, x20\n"
    "    blr x19\n"
    "    brk #1\n"
    "    .cfi_endproc\n"
    ".size sd_native_trampoline, .-sd_native_trampoline\n");

enum { SD_NATIVE_FRAME_WORDS = 20 };

static void native_prepare(void **sp_out, void *lo, size_t size, void (*entry)(void *, void *), void *arg) {
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top - SD_NATIVE_FRAME_WORDS;
    memset(sp, 0, SD_NATIVE_FRAME_WORDS * sizeof(uint64_t));  // x29 = 0 ends the frame chain
    sp[0] = (uint64_t)(uintptr_t)entry;                 // x19
    sp[1] = (uint64_t)(uintptr_t)arg;                   // x20
    sp[11] = (uint64_t)(uintptr_t)sd_native_trampoline; // x30
    *sp_out = sp;
}
#endif
#endif  // SD_HAVE_NATIVE

// MARK: - Contexts (either switch)

#if SD_HAVE_UCONTEXT
// The ucontext state of one context, malloc'd only when that switch is used.
struct sd_uctx {
    ucontext_t uc;
    void *mail;  // the value handed over by the switch into this context
    void (*entry)(void *, void *);
    void *arg;
};
#endif

struct sd_ctx {
    void *sp;  // native: the saved stack pointer
#if SD_HAVE_UCONTEXT
    struct sd_uctx *u;
#endif
};

#if SD_HAVE_UCONTEXT
static void uc_entry(unsigned hi, unsigned lo) {
    uintptr_t p = (uintptr_t)lo;
#if UINTPTR_MAX > 0xffffffffu
    p |= (uintptr_t)hi << 32;
#else
    (void)hi;
#endif
    struct sd_uctx *u = (struct sd_uctx *)p;
    u->entry(u->arg, u->mail);
    abort();  // entries never return
}
#endif

/// Prepares `c` (zeroed by the caller) to start entry(arg, value) on [lo, lo + size) at its
/// first switch. 0, or -1 when memory for a ucontext is missing.
static int ctx_prepare(int kind, struct sd_ctx *c, void *lo, size_t size, void (*entry)(void *, void *), void *arg) {
#if SD_HAVE_NATIVE
    if (kind == SD_SWITCH_NATIVE) {
        native_prepare(&c->sp, lo, size, entry, arg);
        return 0;
    }
#endif
#if SD_HAVE_UCONTEXT
    struct sd_uctx *u = c->u != NULL ? c->u : calloc(1, sizeof *u);
    if (u == NULL) return -1;
    c->u = u;
    if (getcontext(&u->uc) != 0) return -1;
    u->uc.uc_stack.ss_sp = lo;
    u->uc.uc_stack.ss_size = size;
    u->uc.uc_link = NULL;
    u->entry = entry;
    u->arg = arg;
    uintptr_t p = (uintptr_t)u;
#if UINTPTR_MAX > 0xffffffffu
    makecontext(&u->uc, (void (*)(void))uc_entry, 2, (unsigned)(p >> 32), (unsigned)p);
#else
    makecontext(&u->uc, (void (*)(void))uc_entry, 2, 0u, (unsigned)p);
#endif
    return 0;
#else
    (void)kind; (void)c; (void)lo; (void)size; (void)entry; (void)arg;
    return -1;
#endif
}

/// The context that will be switched away from (the scheduler's, the ping's main): 0, or
/// -1 when memory for a ucontext is missing.
static int ctx_prepare_current(int kind, struct sd_ctx *c) {
#if SD_HAVE_NATIVE
    if (kind == SD_SWITCH_NATIVE) return 0;
#endif
#if SD_HAVE_UCONTEXT
    c->u = calloc(1, sizeof *c->u);
    return c->u != NULL ? 0 : -1;
#else
    (void)c;
    return -1;
#endif
}

static void ctx_release(struct sd_ctx *c) {
#if SD_HAVE_UCONTEXT
    free(c->u);
    c->u = NULL;
#else
    (void)c;
#endif
}

/// Suspends `from`, resumes `to` handing it `value`; returns the value handed to `from`
/// when something switches back to it.
static inline void *ctx_switch(int kind, struct sd_ctx *from, struct sd_ctx *to, void *value) {
#if SD_HAVE_NATIVE
    if (kind == SD_SWITCH_NATIVE) return sd_native_switch(&from->sp, to->sp, value);
#endif
#if SD_HAVE_UCONTEXT
    to->u->mail = value;
    swapcontext(&from->u->uc, &to->u->uc);
    return from->u->mail;
#else
    (void)from; (void)to;
    return value;
#endif
}

static int effective_kind(int kind) { return SD_HAVE_NATIVE ? kind : SD_SWITCH_UCONTEXT; }

int sd_switch_native_available(void) { return SD_HAVE_NATIVE; }

// MARK: - Stack sources

int sd_source_available(int source) {
    switch (source) {
    case SD_SOURCE_GOMALLOC:
    case SD_SOURCE_MMAP:
    case SD_SOURCE_MALLOC: return 1;
    default: return 0;
    }
}

static void *stack_alloc(int source, size_t size) {
    switch (source) {
    case SD_SOURCE_GOMALLOC: return gm_stack_alloc(size);
    case SD_SOURCE_MMAP: {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    case SD_SOURCE_MALLOC: return malloc(size);
    default: errno = EINVAL; return NULL;
    }
}

static void stack_free(int source, void *lo, size_t size) {
    switch (source) {
    case SD_SOURCE_GOMALLOC: gm_stack_free(lo, size); break;
    case SD_SOURCE_MMAP: munmap(lo, size); break;
    case SD_SOURCE_MALLOC: free(lo); break;
    default: break;
    }
}

static const char *source_name(int source) {
    switch (source) {
    case SD_SOURCE_GOMALLOC: return "gomalloc";
    case SD_SOURCE_MMAP: return "mmap";
    case SD_SOURCE_MALLOC: return "malloc";
    default: return "?";
    }
}

// MARK: - The workload

enum { SD_FRAME_WORDS = 30, SD_STRIPES = 8, SD_STACK_RESERVE = 1536 };

enum sd_state { SD_NEW = 0, SD_SUSPENDED, SD_DONE, SD_BROKEN };

struct sd_sched;

struct sd_coro {
    struct sd_ctx ctx;
    void *stack;  // low address; NULL once freed
    struct sd_sched *sched;
    uint32_t index;
    uint32_t state;   // enum sd_state
    uint64_t result;  // the coroutine's part of the checksum, once SD_DONE
};

struct sd_sched {
    int kind;
    int yields;
    size_t stack_size;
    struct sd_ctx main;
    // The first failure a coroutine found (it then switches back as SD_BROKEN).
    uint32_t bad_index, bad_level, bad_word;
    uint64_t bad_expected, bad_found;
    const char *bad_what;
    // sd_run_corrupting: coroutine corrupt_index shows its deepest frame here, and the
    // scheduler changes one word of it after the first round.
    size_t corrupt_index;
    struct sd_frame *corrupt_frame;
};

// One recursion level: 248 bytes of pattern plus the link to the level above.
struct sd_frame {
    struct sd_frame *outer;
    uint64_t words[SD_FRAME_WORDS];
};

static inline uint64_t pattern(uint32_t index, uint32_t level, uint32_t word) {
    uint64_t x = ((uint64_t)index << 32) ^ ((uint64_t)level << 8) ^ word;
    x *= 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 31);
}

/// How many bytes of its stack coroutine `index` uses: 1-6 KiB, capped.
static size_t stack_use(uint32_t index, size_t stack_size) {
    uint64_t h = (uint64_t)index * 0x9E3779B97F4A7C15ull;
    size_t use = 1024 + (size_t)((h >> 40) % (5 * 1024 + 1));
    size_t cap = stack_size - SD_STACK_RESERVE;
    return use < cap ? use : cap;
}

/// Records the first failure and leaves for good: the scheduler never resumes a broken
/// coroutine.
__attribute__((noinline, noreturn)) static void broken(struct sd_coro *c, const char *what, uint32_t level,
                                                        uint32_t word, uint64_t expected, uint64_t found) {
    struct sd_sched *s = c->sched;
    s->bad_index = c->index;
    s->bad_level = level;
    s->bad_word = word;
    s->bad_expected = expected;
    s->bad_found = found;
    s->bad_what = what;
    c->state = SD_BROKEN;
    ctx_switch(s->kind, &c->ctx, &s->main, NULL);
    __builtin_trap();
}

/// Checks words stripe, stripe + SD_STRIPES, ... of every frame from `f` (level `level`) up
/// to level 0, and that the chain stays on this coroutine's stack; returns the sum of the
/// words read. (Every word of every frame is checked again on the way back up.)
__attribute__((noinline)) static uint64_t check_chain(struct sd_coro *c, struct sd_frame *f, uint32_t level,
                                                       uint32_t stripe) {
    uintptr_t lo = (uintptr_t)c->stack, hi = lo + c->sched->stack_size;
    uint64_t sum = 0;
    for (;;) {
        if ((uintptr_t)f < lo || (uintptr_t)f + sizeof *f > hi)
            broken(c, "a frame link leaves the stack", level, 0, 0, (uint64_t)(uintptr_t)f);
        for (uint32_t j = stripe; j < SD_FRAME_WORDS; j += SD_STRIPES) {
            uint64_t want = pattern(c->index, level, j), got = f->words[j];
            if (got != want) broken(c, "a stack word changed", level, j, want, got);
            sum += got;
        }
        if (level == 0) break;
        f = f->outer;
        level--;
    }
    if (f->outer != NULL) broken(c, "the outermost frame's link changed", 0, 0, 0, (uint64_t)(uintptr_t)f->outer);
    return sum;
}

/// At depth: yield `yields` times, checking a stripe of every frame after each resume.
__attribute__((noinline)) static uint64_t at_depth(struct sd_coro *c, struct sd_frame *deepest, uint32_t level) {
    struct sd_sched *s = c->sched;
    uint64_t sum = 0;
    if (c->index == s->corrupt_index && s->yields > 0) s->corrupt_frame = deepest;
    for (int y = 0; y < s->yields; y++) {
        c->state = SD_SUSPENDED;
        ctx_switch(s->kind, &c->ctx, &s->main, NULL);
        sum += check_chain(c, deepest, level, (uint32_t)y % SD_STRIPES);
    }
    return sum;
}

/// One level of the recursion: fill a frame, go deeper until `floor`, then on the way back
/// check every word of the frame.
__attribute__((noinline)) static uint64_t descend(struct sd_coro *c, struct sd_frame *outer, uint32_t level,
                                                   uintptr_t floor) {
    struct sd_frame f;
    f.outer = outer;
    for (uint32_t j = 0; j < SD_FRAME_WORDS; j++) f.words[j] = pattern(c->index, level, j);
    uint64_t sum;
    if ((uintptr_t)&f > floor)
        sum = descend(c, &f, level + 1, floor);
    else
        sum = at_depth(c, &f, level) + level;
    for (uint32_t j = 0; j < SD_FRAME_WORDS; j++) {
        uint64_t want = pattern(c->index, level, j), got = ((volatile uint64_t *)f.words)[j];
        if (got != want) broken(c, "a stack word changed", level, j, want, got);
        sum += got;
    }
    if (f.outer != outer) broken(c, "a frame link changed", level, 0, (uint64_t)(uintptr_t)outer,
                                 (uint64_t)(uintptr_t)f.outer);
    return sum;
}

static void coro_main(void *arg, void *value) {
    (void)value;
    struct sd_coro *c = arg;
    _Alignas(16) volatile unsigned char probe[16];
    probe[0] = 0;
    if (((uintptr_t)probe & 15) != 0) broken(c, "the stack is not 16-byte aligned", 0, 0, 0, (uint64_t)(uintptr_t)probe);
    uintptr_t top = (uintptr_t)c->stack + c->sched->stack_size;
    c->result = descend(c, NULL, 0, top - stack_use(c->index, c->sched->stack_size));
    c->state = SD_DONE;
    ctx_switch(c->sched->kind, &c->ctx, &c->sched->main, NULL);
    __builtin_trap();  // a finished coroutine is never resumed
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(struct sd_result *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct sd_result *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->error, sizeof out->error, fmt, ap);
    va_end(ap);
}

static int run(int switch_kind, int source, size_t count, size_t stack_size, int yields, size_t corrupt_index,
               struct sd_result *out);

int sd_run(int source, size_t count, size_t stack_size, int yields, struct sd_result *out) {
    return run(SD_SWITCH_NATIVE, source, count, stack_size, yields, SIZE_MAX, out);
}

int sd_run_switch(int switch_kind, int source, size_t count, size_t stack_size, int yields,
                  struct sd_result *out) {
    return run(switch_kind, source, count, stack_size, yields, SIZE_MAX, out);
}

int sd_run_corrupting(int source, size_t count, size_t stack_size, int yields, size_t corrupt_index,
                      struct sd_result *out) {
    return run(SD_SWITCH_NATIVE, source, count, stack_size, yields, corrupt_index, out);
}

static int run(int switch_kind, int source, size_t count, size_t stack_size, int yields, size_t corrupt_index,
               struct sd_result *out) {
    memset(out, 0, sizeof *out);
    if (source != SD_SOURCE_GOMALLOC && source != SD_SOURCE_MMAP && source != SD_SOURCE_MALLOC) {
        fail(out, "unknown stack source %d", source);
        return SD_FAILED;
    }
    if (switch_kind != SD_SWITCH_NATIVE && switch_kind != SD_SWITCH_UCONTEXT) {
        fail(out, "unknown context switch %d", switch_kind);
        return SD_FAILED;
    }
    if (stack_size < 2048 || stack_size > ((size_t)1 << 30) || (stack_size & (stack_size - 1)) != 0) {
        fail(out, "the stack size must be a power of two from 2048 to 1 GiB (got %zu)", stack_size);
        return SD_FAILED;
    }
    if (yields < 0) {
        fail(out, "yields must be at least 0 (got %d)", yields);
        return SD_FAILED;
    }
    if (count > UINT32_MAX) {
        fail(out, "at most %u coroutines (got %zu)", UINT32_MAX, count);
        return SD_FAILED;
    }
    if (!sd_source_available(source)) {
        fail(out, "the gomalloc stack source is not in this build: gm_stack_alloc/gm_stack_free "
                  "(GoMalloc's stack allocator) are not linked in");
        return SD_UNAVAILABLE;
    }

    struct sd_sched s;
    memset(&s, 0, sizeof s);
    s.kind = effective_kind(switch_kind);
    s.yields = yields;
    s.stack_size = stack_size;
    s.corrupt_index = corrupt_index;
    struct sd_coro *coros = NULL;
    uint32_t *live = NULL;
    size_t created = 0;
    int rc = SD_FAILED;
    if (ctx_prepare_current(s.kind, &s.main) != 0) {
        fail(out, "out of memory for the scheduler's context");
        goto done;
    }
    if (count > 0) {
        coros = calloc(count, sizeof *coros);
        live = malloc(count * sizeof *live);
        if (coros == NULL || live == NULL) {
            fail(out, "out of memory for %zu coroutine records", count);
            goto done;
        }
    }

    double start = now_seconds();
    // Create them all: every coroutine is alive at once.
    for (; created < count; created++) {
        struct sd_coro *c = &coros[created];
        c->sched = &s;
        c->index = (uint32_t)created;
        errno = 0;
        c->stack = stack_alloc(source, stack_size);
        if (c->stack == NULL) {
            int e = errno;
            fail(out, "%s: allocating stack %zu of %zu (%zu bytes) failed: %s", source_name(source), created + 1,
                 count, stack_size, e != 0 ? strerror(e) : "no memory");
            goto done;
        }
        if (ctx_prepare(s.kind, &c->ctx, c->stack, stack_size, coro_main, c) != 0) {
            created++;
            fail(out, "out of memory for the context of coroutine %zu", created);
            goto done;
        }
        live[created] = (uint32_t)created;
    }

    // Rounds: resume every live coroutine once; the finished ones leave the list.
    size_t nlive = count;
    uint64_t switches = 0, checksum = 0;
    while (nlive > 0) {
        size_t kept = 0;
        for (size_t k = 0; k < nlive; k++) {
            struct sd_coro *c = &coros[live[k]];
            ctx_switch(s.kind, &s.main, &c->ctx, NULL);
            switches += 2;
            if (c->state == SD_DONE) {
                checksum += c->result;
                stack_free(source, c->stack, stack_size);
                c->stack = NULL;
                ctx_release(&c->ctx);
            } else if (c->state == SD_BROKEN) {
                fail(out, "%s: coroutine %u: %s (level %u, word %u: expected 0x%016llx, found 0x%016llx)",
                     source_name(source), s.bad_index, s.bad_what, s.bad_level, s.bad_word,
                     (unsigned long long)s.bad_expected, (unsigned long long)s.bad_found);
                out->switches = switches;
                goto done;
            } else {
                live[kept++] = live[k];
            }
        }
        nlive = kept;
        if (s.corrupt_frame != NULL) {
            s.corrupt_frame->words[SD_FRAME_WORDS / 2] ^= 1;
            s.corrupt_frame = NULL;
        }
    }
    out->seconds = now_seconds() - start;
    out->switches = switches;
    out->checksum = checksum;
    rc = SD_OK;

done:
    // Stacks of coroutines that did not finish (a failed run) are freed without unwinding
    // them: nothing on them owns anything else.
    for (size_t i = 0; i < created; i++) {
        if (coros[i].stack != NULL) stack_free(source, coros[i].stack, stack_size);
        ctx_release(&coros[i].ctx);
    }
    ctx_release(&s.main);
    free(coros);
    free(live);
    return rc;
}

// MARK: - sd_ping: the context switch alone

enum { SD_PING_MAX = 16, SD_PING_STACK = 64 * 1024 };

struct sd_ping {
    int kind, n, rounds;
    struct sd_ctx main;
    struct sd_ctx ctx[SD_PING_MAX];
    int arg_k[SD_PING_MAX];
    struct sd_ping *self[SD_PING_MAX];  // self[k] == this; ctx k's argument is &self[k]
    const char *bad;
    int bad_k, bad_round;
};

static inline uint64_t ping_step(uint64_t v, int k) { return v * 3 + (uint64_t)(k + 1); }

uint64_t sd_ping_expected(int coroutines, int rounds) {
    uint64_t v = 1;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < coroutines; k++) v = (uint64_t)(uintptr_t)ping_step(v, k);  // as a pointer carries it
    return v;
}

static void ping_main(void *arg, void *value) {
    struct sd_ping **slot = arg;
    struct sd_ping *p = *slot;
    int k = (int)(slot - p->self);
    uint64_t v = (uint64_t)(uintptr_t)value;
    // Locals kept across the switches (the compiler keeps them in callee-saved registers
    // or in this frame; either must survive).
    uint64_t turns = 0;
    double half_turns = 0.0;
    uint64_t salt = 0x5bd1e995ull * (uint64_t)(k + 1);
    for (int r = 0;; r++) {
        _Alignas(16) volatile unsigned char probe[16];
        probe[0] = (unsigned char)r;
        if (((uintptr_t)probe & 15) != 0 && p->bad == NULL) {
            p->bad = "the stack is not 16-byte aligned";
            p->bad_k = k;
            p->bad_round = r;
        }
        if ((turns != (uint64_t)r || half_turns != 0.5 * r || salt != 0x5bd1e995ull * (uint64_t)(k + 1)) &&
            p->bad == NULL) {
            p->bad = "a local kept across a switch changed";
            p->bad_k = k;
            p->bad_round = r;
        }
        turns++;
        half_turns += 0.5;
        v = ping_step(v, k);
        struct sd_ctx *next = k + 1 < p->n ? &p->ctx[k + 1] : &p->main;
        v = (uint64_t)(uintptr_t)ctx_switch(p->kind, &p->ctx[k], next, (void *)(uintptr_t)v);
    }
}

int sd_ping(int switch_kind, int coroutines, int rounds, uint64_t *value, char *error, size_t error_size) {
    if (error_size > 0) error[0] = 0;
    if (coroutines < 1 || coroutines > SD_PING_MAX || rounds < 0) {
        snprintf(error, error_size, "sd_ping: 1 to %d coroutines and rounds >= 0 (got %d, %d)", SD_PING_MAX,
                 coroutines, rounds);
        return -1;
    }
    struct sd_ping p;
    memset(&p, 0, sizeof p);
    p.kind = effective_kind(switch_kind);
    p.n = coroutines;
    p.rounds = rounds;
    void *stacks[SD_PING_MAX] = {0};
    int rc = -1;
    if (ctx_prepare_current(p.kind, &p.main) != 0) {
        snprintf(error, error_size, "sd_ping: out of memory");
        goto done;
    }
    for (int k = 0; k < coroutines; k++) {
        p.self[k] = &p;
        stacks[k] = malloc(SD_PING_STACK);
        if (stacks[k] == NULL || ctx_prepare(p.kind, &p.ctx[k], stacks[k], SD_PING_STACK, ping_main, &p.self[k]) != 0) {
            snprintf(error, error_size, "sd_ping: out of memory");
            goto done;
        }
    }
    uint64_t v = 1;
    for (int r = 0; r < rounds; r++) v = (uint64_t)(uintptr_t)ctx_switch(p.kind, &p.main, &p.ctx[0], (void *)(uintptr_t)v);
    if (p.bad != NULL) {
        snprintf(error, error_size, "sd_ping: coroutine %d, round %d: %s", p.bad_k, p.bad_round, p.bad);
        goto done;
    }
    *value = v;
    rc = 0;
done:
    // The coroutines are left suspended in their switch; their stacks go without unwinding.
    for (int k = 0; k < coroutines; k++) {
        ctx_release(&p.ctx[k]);
        free(stacks[k]);
    }
    ctx_release(&p.main);
    return rc;
}
