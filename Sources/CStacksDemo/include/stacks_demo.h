// stacks_demo.h — the coroutine workload behind `gomalloc stacks-demo`.
//
// Role: run N cooperative coroutines on stacks from one of three sources (GoMalloc's stack
// allocator, one mmap per stack, malloc) with a context switch of our own, and report the
// time, the context switches and a checksum of what the coroutines read back from their
// stacks. The CLI (Sources/gomalloc/StacksDemoCommand.swift) runs each source in its own
// process to compare peak RSS; this library only does the work and the timing.
//
// Workload (sd_run): all `count` coroutines are created first (each gets its stack), then
// a round-robin scheduler resumes every live one until it yields or finishes. Coroutine i
// recurses until it uses between 1 and 6 KiB of its stack (chosen from i, capped at
// stack_size - 1536), writes a pattern derived from (i, level, word) into every frame,
// yields `yields` times at that depth, checks the frames after every resume (a stripe of
// each frame per resume, every word on the way back up) and finishes; the scheduler frees
// its stack at once. Any word of a frame that another coroutine (or the allocator) changed
// makes the run fail. The checksum depends on the workload only, so every source of the
// same run must report the same one.
//
// Concurrency: no global state; sd_run and sd_ping may run on several threads at once,
// each call using its own coroutines on the calling thread. Coroutines run with no signal
// stack of their own: a signal handler runs on the stack of the coroutine it interrupts.
// Failure: every function reports through its return value and the caller's buffers;
// nothing aborts or prints.
#ifndef STACKS_DEMO_H
#define STACKS_DEMO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Where the stacks come from.
enum sd_source {
    /// gm_stack_alloc / gm_stack_free, GoMalloc's stack allocator (stackpool, stackcache,
    /// stackLarge), when this binary links it.
    SD_SOURCE_GOMALLOC = 0,
    /// One mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK)
    /// per stack and munmap at its end; no guard page (a guard page per stack would make
    /// 2 mappings per coroutine, past vm.max_map_count's default of 65530 at 100,000).
    SD_SOURCE_MMAP = 1,
    /// malloc / free of the stack size: the process's malloc (glibc's in the CLI).
    SD_SOURCE_MALLOC = 2,
};

/// The context switch.
enum sd_switch_kind {
    /// Our own: saves the callee-saved registers on the stack and swaps stack pointers
    /// (x86-64 and AArch64); where there is none, the same as SD_SWITCH_UCONTEXT.
    SD_SWITCH_NATIVE = 0,
    /// makecontext / swapcontext (glibc); one signal-mask system call per switch.
    SD_SWITCH_UCONTEXT = 1,
};

/// Return values of sd_run.
enum {
    SD_OK = 0,
    /// The run failed: bad arguments, a stack allocation failed, a frame's pattern changed.
    SD_FAILED = 1,
    /// The source is not in this binary (SD_SOURCE_GOMALLOC without the stack allocator).
    SD_UNAVAILABLE = 2,
};

#define SD_ERROR_SIZE 256

struct sd_result {
    /// Wall time of the whole run (CLOCK_MONOTONIC): creating the coroutines and their
    /// stacks, running them, freeing the stacks.
    double seconds;
    /// Context switches done: two per resume (into the coroutine and back).
    uint64_t switches;
    /// The sum of every word the coroutines read back from their frames.
    uint64_t checksum;
    /// Why the run failed (NUL-terminated; empty on success).
    char error[SD_ERROR_SIZE];
};

/// 1 when `source` can be used in this binary, else 0.
int sd_source_available(int source);

/// 1 when SD_SWITCH_NATIVE is our own assembly on this architecture, 0 when it falls back
/// to ucontext.
int sd_switch_native_available(void);

/// Runs the workload with the native context switch; see above. `stack_size` must be a
/// power of two, at least 2048 and at most 1 GiB; `yields` at least 0. Returns SD_OK,
/// SD_FAILED or SD_UNAVAILABLE, with *out filled in every case.
int sd_run(int source, size_t count, size_t stack_size, int yields, struct sd_result *out);

/// sd_run with the context switch chosen (enum sd_switch_kind).
int sd_run_switch(int switch_kind, int source, size_t count, size_t stack_size, int yields,
                  struct sd_result *out);

/// For tests: sd_run (native switch) where, after the first round, the scheduler flips a bit
/// in the deepest frame of coroutine `corrupt_index` (as an overlapping stack would): the
/// run must fail with "a stack word changed". With yields == 0 nothing is changed.
int sd_run_corrupting(int source, size_t count, size_t stack_size, int yields, size_t corrupt_index,
                      struct sd_result *out);

/// A check of the context switch alone: `coroutines` (1..16) coroutines on malloc'd
/// stacks pass a value around a ring (main -> 0 -> 1 -> ... -> main) `rounds` times, each
/// switching straight to the next one, each changing the value and checking the locals it
/// keeps across switches and its stack's 16-byte alignment. Returns 0 and the final value
/// in *value, or -1 with a message in `error`.
int sd_ping(int switch_kind, int coroutines, int rounds, uint64_t *value, char *error, size_t error_size);

/// What sd_ping's final value must be for these arguments.
uint64_t sd_ping_expected(int coroutines, int rounds);

#ifdef __cplusplus
}
#endif

#endif
