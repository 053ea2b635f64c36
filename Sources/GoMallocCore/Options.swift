// Options.swift — every GOMALLOC_* environment variable, in one table.
//
// Role: the allocator's settings. Each option has one row: name, default, bounds, unit and
//   a line of documentation; the values are read once at heap initialisation through the C
//   getenv shim (glibc's getenv does not allocate), and the CLI prints its help from here.
// Go counterpart: runtime1.go (GODEBUG parsing), proc.go (GOMAXPROCS).
// Invariants:
//   I1. One row per Option case; names unique; defaults within [min, max].
//   I2. No other file calls getenv.
// Concurrency: read once before the heap is published; immutable afterwards.
// Failure: a value that is not all decimal digits (empty, signed, trailing garbage) falls
//   back to the default; a number out of range, however long, is clamped to the bounds.
import CGoMallocSys

package enum Option: Int {
    case maxProcs
    case stats
    case retainPercent

    package struct Row {
        package let name: StaticString
        /// 0 for maxProcs means "the CPUs this process may use".
        package let defaultValue: Int
        package let min: Int
        package let max: Int
        package let unit: StaticString
        package let doc: StaticString
    }

    /// The table.
    package var row: Row {
        switch self {
        case .maxProcs:
            Row(name: "GOMALLOC_MAXPROCS", defaultValue: 0, min: 1, max: 256, unit: "Ps",
                doc: "Number of Ps (and so at most of mcaches). Default: CPUs in the affinity mask, capped by the cgroup CPU quota.")
        case .stats:
            Row(name: "GOMALLOC_STATS", defaultValue: 0, min: 0, max: Int(Int32.max), unit: "0, 1 or pid",
                doc: "1: every process prints MemStats (HeapAlloc, HeapSys, ..., per-class counts, mcaches) to stderr at exit; a pid: only that process (gomalloc run --stats sets it).")
        case .retainPercent:
            Row(name: "GOMALLOC_RETAIN_PERCENT", defaultValue: 100, min: 0, max: 1000, unit: "%",
                doc: "Free pages kept resident, as a percentage of in-use pages (plus 4 MiB); the rest is returned to the OS.")
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

#if GOMALLOC_HOSTED
// The CLI lists the table; `allCases` is an array, which Embedded's -no-allocations forbids.
extension Option: CaseIterable {}
#endif
