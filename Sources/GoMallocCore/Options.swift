// Options.swift — every GOMALLOC_* environment variable, in one table.
//
// Role: the allocator's settings. Each option has one row: name, default, bounds and its
//   documentation (the default and the range as the docs show them, and what it does); the
//   values are read once at heap initialisation through the C getenv shim (glibc's getenv
//   does not allocate). `gomalloc --help` prints its options section from this table, and a
//   test checks that README.md's options table is this table.
// Go counterpart: runtime1.go (GODEBUG parsing), proc.go (GOMAXPROCS).
// Invariants:
//   I1. One row per Option case; names unique; defaults within [min, max] (except
//       maxProcs's 0, "the CPUs"); defaultDoc and rangeDoc agree with the numbers.
//   I2. No other file calls getenv.
// Concurrency: read once before the heap is published; immutable afterwards.
// Failure: a value that is not all decimal digits (empty, signed, trailing garbage) falls
//   back to the default (GOMALLOC_STATS=json and GOMALLOC_SCAVENGE's words are read by
//   `isSet(to:)`, a word not known is the default; GOMALLOC_HEAPMAP is a path read by
//   `string()`; GOMALLOC_MEMORY_LIMIT is a byte count read by `readBytes()`, malformed: no
//   limit); a number out of range, however long, is clamped to the bounds.
import CGoMallocSys

package enum Option: Int {
    case maxProcs
    case stats
    case retainPercent
    case rseq
    case tiny
    case stackGuard
    case heapMap
    case scavenge
    case memoryLimit
    case debug
    case profile
    case profileRate
    case profileSeed
    case profileUnwind

    package struct Row {
        package let name: StaticString
        /// 0 for maxProcs means "the CPUs this process may use".
        package let defaultValue: Int
        package let min: Int
        package let max: Int
        /// The default as the documentation states it.
        package let defaultDoc: StaticString
        /// The accepted values as the documentation states them.
        package let rangeDoc: StaticString
        /// What the option does (Markdown: `code` spans).
        package let doc: StaticString
    }

    /// The table.
    package var row: Row {
        switch self {
        case .maxProcs:
            Row(name: "GOMALLOC_MAXPROCS", defaultValue: 0, min: 1, max: 256,
                defaultDoc: "CPUs in the affinity mask, capped by the cgroup CPU quota", rangeDoc: "1–256",
                doc: "Number of Ps taken by compare-and-swap. With Ps bound to CPUs (`GOMALLOC_RSEQ`) these are the fallback behind one P per CPU, used while a thread holding its CPU's P is preempted: at most the CPUs the process runs on plus this many mcaches exist. Without, the most mcaches that can exist.")
        case .stats:
            Row(name: "GOMALLOC_STATS", defaultValue: 0, min: 0, max: Int(Int32.max),
                defaultDoc: "0", rangeDoc: "0, 1, a pid or json",
                doc: "1 (or the process's own pid: that process only — `gomalloc run --stats` uses this, so the programs it starts stay quiet): print MemStats (`HeapAlloc` and its `HeapAllocScan` / `HeapAllocNoscan` parts, `HeapSys`, `HeapIdle`, `HeapInuse`, `HeapReleased`, `Mallocs`, `Frees`, `TinyAllocs`, `TinyFrees`, `TinyBlocks`, `StackInuse`, `StackSys` and their parts (`StackAlloc`, `StackCached`, `StackPoolFree`, `StackLargeFree`), `StackAllocs`, `StackFrees`, `MetadataSys`, `ScavengerReleased` (and its `ScavengerBackgroundReleased` part), `ScavengerThread`, `MemoryLimit`, `MemoryLimitHits`, `Ps`, `CPUPs` (Ps bound to CPUs), `mcaches`, then a table of per-class counts with their noscan part) to stderr at exit, one figure per line (byte figures followed by their size in KiB/MiB/GiB), without allocating. `json`: the same figures as one line of JSON (the form `gomalloc_stats_json` returns).")
        case .retainPercent:
            Row(name: "GOMALLOC_RETAIN_PERCENT", defaultValue: 100, min: 0, max: 1000,
                defaultDoc: "100", rangeDoc: "0–1000",
                doc: "Free pages kept resident, as a percentage of in-use pages (plus 4 MiB); the excess is returned to the OS (`MADV_DONTNEED`), at most every 50 ms unless it grows past twice that. Lower it for a leaner RSS, raise it for fewer page faults.")
        case .tiny:
            Row(name: "GOMALLOC_TINY", defaultValue: 0, min: 0, max: 1,
                defaultDoc: "0", rangeDoc: "0 or 1",
                doc: "1: pack requests of 1–4 bytes (every C request; Swift requests made with `containsPointers: false`) into shared 16-byte blocks, as Go's tiny allocator does, each at an offset that is a multiple of its rounded size (1, 2, 4, 4 bytes) with exact double and invalid free detection. Off by default: it saves memory only where many such objects live together and costs up to a fifth of the time of programs that make many 4-byte requests (DESIGN.md). 0: give them 8-byte objects.")
        case .stackGuard:
            Row(name: "GOMALLOC_STACK_GUARD", defaultValue: 0, min: 0, max: 1,
                defaultDoc: "0", rangeDoc: "0 or 1",
                doc: "1: the lowest OS page of every stack of 32 KiB or more from `gomalloc_stack_alloc` is made inaccessible (`PROT_NONE`), so an overflow faults instead of writing into the neighbour; the stack's usable size shrinks by that page (`gomalloc_stack_guard_size`). Each guarded stack costs the kernel two more memory mappings (`vm.max_map_count`, 65,530 by default, caps a process near 32,000 guarded stacks). 0: no guard pages.")
        case .heapMap:
            Row(name: "GOMALLOC_HEAPMAP", defaultValue: 0, min: 0, max: 0,
                defaultDoc: "unset", rangeDoc: "a file path",
                doc: "At exit, stop the world and write a heap dump to this file (created or truncated; `%p` in the path is replaced by the process id): every arena page by page, run-length encoded as small-span (with its size class), large-span, stack, free, released or uncommitted runs, with totals. Written without allocating; nothing is written if the file cannot be created. Only the process that loaded the library writes it (forked children do not; programs it execs write their own, so use `%p` when the command starts others). `gomalloc heapmap` sets it and draws the dump.")
        case .scavenge:
            Row(name: "GOMALLOC_SCAVENGE", defaultValue: 1, min: 0, max: 2,
                defaultDoc: "on", rangeDoc: "off, on or eager",
                doc: "How free memory goes back to the OS (Scavenger.swift). `on`: free pages past the retain goal (`GOMALLOC_RETAIN_PERCENT`) are released on the free path, paced; once the heap has mapped 64 MiB a background thread of ours (`gomalloc-scav`, started on a later allocation, again lazily in a forked child) does that pacing instead and, after a second without any heap call, flushes the caches and releases every free page. `eager`: every free page is released as soon as it is free (leanest, slowest; no thread). `off`: only `malloc_trim` and the memory limit release memory (no thread).")
        case .memoryLimit:
            Row(name: "GOMALLOC_MEMORY_LIMIT", defaultValue: 0, min: 0, max: Int.max,
                defaultDoc: "0 (none)", rangeDoc: "bytes, with K, M or G",
                doc: "A soft limit on resident heap memory (in-use and free resident pages, stacks and metadata), like Go's `GOMEMLIMIT`: as the heap nears 95% of it the retain goal shrinks to what fits, and once past it every free page is released at once, without pacing. Allocation past the limit still succeeds; `MemoryLimitHits` counts the times the resident heap went past it. 0: no limit.")
        case .debug:
            Row(name: "GOMALLOC_DEBUG", defaultValue: 0, min: 0, max: 1,
                defaultDoc: "0", rangeDoc: "0 or 1",
                doc: "1: the hardened mode (Debug.swift). Freed small objects are filled with `0xDF` and checked when malloc hands them out again: a write after free is reported (`gomalloc: malloc(): write after free 0x… (byte N)`) and the process aborts; every large block ends in an inaccessible guard page, so an overrun past its usable size faults at once. Every malloc and free takes the slow path (several times slower; packing by `GOMALLOC_TINY` is off). Swift requests with `containsPointers: true` are poisoned when freed but not checked. 0: off.")
        case .profile:
            Row(name: "GOMALLOC_PROFILE", defaultValue: 0, min: 0, max: 0,
                defaultDoc: "unset", rangeDoc: "a file path",
                doc: "Turn heap profiling on (at `GOMALLOC_PROFILE_RATE`) and write the profile to this file (created or truncated; `%p` in the path is replaced by the process id) at exit and whenever the process gets `SIGUSR2` (unless the program handles that signal itself): one line per call stack and size with the sampled allocations and frees, then the process's memory map. Written without allocating. Forked children write theirs only when the path has `%p`. `gomalloc profile` sets it and turns the file into pprof, folded stacks and a flame graph.")
        case .profileRate:
            Row(name: "GOMALLOC_PROFILE_RATE", defaultValue: 524_288, min: 0, max: 1 << 40,
                defaultDoc: "524288 with GOMALLOC_PROFILE set, else 0", rangeDoc: "0 or bytes",
                doc: "Heap profiling's mean sampling interval in bytes, as Go's `MemProfileRate`: each P counts the bytes it allocates of each size class down from a random threshold drawn from an exponential distribution with this mean, and the allocation that crosses it records its call stack (frame pointers) and size; 1 samples every allocation, 0 turns sampling off. Set on its own it turns sampling on without a file (`gomalloc_profile_dump`, `GoAllocator.heapProfile()`). While sampling is on the fast path stays, budgeted so that the sampled allocation reaches the slow path (DESIGN.md, \"Heap profiling\").")
        case .profileSeed:
            Row(name: "GOMALLOC_PROFILE_SEED", defaultValue: 0, min: 0, max: Int(UInt32.max),
                defaultDoc: "0", rangeDoc: "0–4294967295",
                doc: "Seed of the sampling thresholds' random generators (the n-th P to sample gets one derived from it and n), so that a program allocating on one thread repeats its samples from run to run; 0 seeds them from the clock and the process id.")
        case .profileUnwind:
            Row(name: "GOMALLOC_PROFILE_UNWIND", defaultValue: 0, min: 0, max: 1,
                defaultDoc: "0", rangeDoc: "0 or 1",
                doc: "How heap profiling walks a sampled allocation's stack. 0: frame pointers, with every stack page proven readable first; cheap and safe, but the walk stops at the first function built without them (Debian's libraries and most distribution binaries), so such programs show little more than the function that called `malloc`. 1: glibc's `backtrace()` (libgcc's unwinder over the binaries' `.eh_frame` tables), which sees through such code; it is loaded when the heap starts (the only time it allocates), costs a few microseconds per sample, and takes the dynamic loader's `dl_iterate_phdr` lock inside `malloc` (DESIGN.md, \"Heap profiling\").")
        case .rseq:
            Row(name: "GOMALLOC_RSEQ", defaultValue: 1, min: 0, max: 1,
                defaultDoc: "1", rangeDoc: "0 or 1",
                doc: "1: bind Ps to CPUs where the kernel and glibc allow it (a restartable sequence takes this CPU's P without a locked instruction; Linux 5.10+, glibc 2.35+, not under valgrind). 0: take Ps by compare-and-swap only (the fallback).")
        }
    }

    /// The value from the environment (read on every call), clamped to the row's bounds; the
    /// default when unset or not all decimal digits.
    package func read() -> Int {
        let r = row
        let name = UnsafeRawPointer(r.name.utf8Start).assumingMemoryBound(to: CChar.self)
        guard let v = gm_sys_getenv(name) else { return r.defaultValue }
        var value = 0
        var i = 0
        while v[i] >= 0x30 && v[i] <= 0x39 {
            // Once past max the value only needs to stay past it: stop growing, never overflow.
            if value <= r.max { value = value * 10 + Int(v[i] - 0x30) }
            i += 1
        }
        if i == 0 || v[i] != 0 { return r.defaultValue }
        return Swift.min(Swift.max(value, r.min), r.max)
    }
}

/// GOMALLOC_SCAVENGE's values.
package enum ScavengeMode: UInt8 {
    case off = 0, on = 1, eager = 2
}

extension Option {
    /// GOMALLOC_SCAVENGE: `off` or `eager`; anything else (unset, a typo) is `on`.
    package static func scavengeMode() -> ScavengeMode {
        Option.scavenge.isSet(to: "off") ? .off : Option.scavenge.isSet(to: "eager") ? .eager : .on
    }

    /// A byte count with an optional K, M or G suffix (powers of 1024, either case; a
    /// trailing B or iB is accepted: 512M, 2GiB, 100000); 0 when unset or malformed;
    /// saturating at the row's max. GOMALLOC_MEMORY_LIMIT.
    package func readBytes() -> Int {
        guard let v = string() else { return row.defaultValue }
        var value = 0
        var i = 0
        while v[i] >= 0x30 && v[i] <= 0x39 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(v[i] - 0x30))
            value = o1 || o2 ? Int.max : a
            i += 1
        }
        if i == 0 { return row.defaultValue }
        var shift = 0
        switch v[i] | 0x20 {  // lower case
        case 0x6b: shift = 10; i += 1  // k
        case 0x6d: shift = 20; i += 1  // m
        case 0x67: shift = 30; i += 1  // g
        default: break
        }
        if shift != 0 && (v[i] | 0x20) == 0x69 && (v[i + 1] | 0x20) == 0x62 { i += 2 }  // iB
        else if (v[i] | 0x20) == 0x62 { i += 1 }  // B
        if v[i] != 0 { return row.defaultValue }
        if shift != 0 { value = value > (Int.max >> shift) ? Int.max : value << shift }
        return Swift.min(value, row.max)
    }

    /// The variable's raw value (a string option such as GOMALLOC_HEAPMAP's path); nil when
    /// unset. Read on every call; the pointer is the environment's own.
    package func string() -> UnsafePointer<CChar>? {
        gm_sys_getenv(UnsafeRawPointer(row.name.utf8Start).assumingMemoryBound(to: CChar.self))
    }

    /// Whether the variable is set to exactly `word` (GOMALLOC_STATS=json: a mode that is
    /// not a number; `read()` gives the default for it). Read on every call.
    package func isSet(to word: StaticString) -> Bool {
        let name = UnsafeRawPointer(row.name.utf8Start).assumingMemoryBound(to: CChar.self)
        guard let v = gm_sys_getenv(name) else { return false }
        var i = 0
        var same = true
        word.withUTF8Buffer { bytes in
            for b in bytes {
                if UInt8(bitPattern: v[i]) != b { same = false; return }
                i += 1
            }
        }
        return same && v[i] == 0
    }
}

#if GOMALLOC_HOSTED
// The CLI lists the table; `allCases` is an array, which Embedded's -no-allocations forbids.
extension Option: CaseIterable {}
#endif
