// GoAllocator.swift — GoMalloc's Swift API: Go's allocator behind a safe, documented surface.
//
// The raw-pointer contract is that of `UnsafeMutableRawPointer.allocate(byteCount:alignment:)`:
// `byteCount` is non-negative, `alignment` a power of two, and the memory is uninitialised
// (except from `allocateZeroed`). Unlike the standard library's allocate, a request that
// cannot be satisfied returns nil instead of trapping. Blocks must be given back with
// `deallocate(_:)` (not `free`, unless the process runs with the GoMalloc drop-in), exactly
// once; a double or invalid deallocation is reported on stderr and aborts the process.
import GoMallocCoreHosted

/// Go's allocator (size classes, per-P mcaches, mcentrals, the page heap) as a Swift API.
public enum GoAllocator {
    /// Allocate `byteCount` bytes aligned to `alignment`.
    ///
    /// - Parameters:
    ///   - byteCount: bytes to allocate, `>= 0`. Zero gives a unique pointer that can be
    ///     deallocated.
    ///   - alignment: a power of two. Up to 8 KiB (Go's page) comes from a size class whose
    ///     objects are all that aligned; larger alignments come from aligned large spans.
    ///   - containsPointers: whether the block will hold pointers (Go's scan/noscan). There
    ///     is no collector to scan it; the answer picks the span class — scan and noscan
    ///     blocks never share a span, and `statistics()` counts them apart — and `false` lets
    ///     a block of 1-4 bytes be packed with others into a 16-byte block by the tiny
    ///     allocator, as Go does for small noscan objects (C allocations are all noscan).
    /// - Returns: the block, or nil when the request cannot be satisfied.
    public static func allocate(byteCount: Int, alignment: Int, containsPointers: Bool = true) -> UnsafeMutableRawPointer? {
        precondition(byteCount >= 0, "GoAllocator.allocate: negative byteCount")
        precondition(alignment > 0 && alignment & (alignment - 1) == 0,
                     "GoAllocator.allocate: alignment must be a power of two")
        return allocateBytes(byteCount, alignment: alignment, zero: false, containsPointers: containsPointers)
    }

    /// Like `allocate(byteCount:alignment:)`, with every byte set to zero. Memory that is
    /// known to be zero (fresh from the OS or released to it) is not cleared again.
    public static func allocateZeroed(byteCount: Int, alignment: Int, containsPointers: Bool = true) -> UnsafeMutableRawPointer? {
        precondition(byteCount >= 0, "GoAllocator.allocateZeroed: negative byteCount")
        precondition(alignment > 0 && alignment & (alignment - 1) == 0,
                     "GoAllocator.allocateZeroed: alignment must be a power of two")
        return allocateBytes(byteCount, alignment: alignment, zero: true, containsPointers: containsPointers)
    }

    /// Give a block back. `pointer` must come from this allocator and not have been
    /// deallocated already; anything else aborts with a one-line report.
    public static func deallocate(_ pointer: UnsafeMutableRawPointer) {
        deallocateBytes(pointer)
    }

    /// Resize a block, keeping its first `min(old, new)` bytes. Returns the (possibly moved)
    /// block, or nil when out of memory, in which case the old block is left untouched.
    /// Grows in place when the new size fits the same size class, or, for large blocks,
    /// when the pages after the block are free.
    public static func reallocate(_ pointer: UnsafeMutableRawPointer, byteCount: Int,
                                  alignment: Int) -> UnsafeMutableRawPointer? {
        precondition(byteCount >= 0, "GoAllocator.reallocate: negative byteCount")
        precondition(alignment > 0 && alignment & (alignment - 1) == 0,
                     "GoAllocator.reallocate: alignment must be a power of two")
        return reallocateBytes(pointer, size: byteCount, alignment: alignment)
    }

    /// The bytes that belong to the block: its size class's object size, or its pages.
    /// `pointer` must be a block this allocator returned and that is not yet deallocated
    /// (a pointer that is not the start of one of its blocks stops the process; a block
    /// already deallocated is not detected here, as with C's malloc_usable_size).
    public static func usableSize(of pointer: UnsafeMutableRawPointer) -> Int {
        usableBytes(pointer)
    }

    /// Flush the mcaches, sweep the mcentrals and return every free page to the OS.
    /// Returns the number of bytes released.
    @discardableResult
    public static func trim() -> Int { trimBytes() }

    /// A snapshot of the heap's statistics (Go's MemStats names).
    public static func statistics() -> MemStats { MemStats(readMemStats()) }

    /// The same statistics as one JSON object (the text of C's `gomalloc_stats_json`): Go's
    /// MemStats names (`HeapAlloc`, `HeapSys`, ..., `ScavengerReleasedBytes`, `MCaches`,
    /// `Arenas`) and `BySize`, one `{Size, Mallocs, Frees, NoscanMallocs, NoscanFrees}` per
    /// size class. One snapshot, formatted twice: for its length, then into the string.
    public static func statisticsJSON() -> String {
        let m = readMemStats()
        let n = formatMemStatsJSON(m, into: nil, capacity: 0)
        return String(unsafeUninitializedCapacity: n + 1) { buffer in
            Swift.min(formatMemStatsJSON(m, into: buffer.baseAddress, capacity: n + 1), n)
        }
    }

    /// Walk the whole heap and check its invariants (span states, bitmaps against counts,
    /// page map against spans, page allocator summaries, central lists, statistics recounted
    /// the slow way). Returns a description of the first violation, or nil. Slow: for tests
    /// and debugging.
    public static func checkInvariants() -> String? {
        guard let v = GoMallocCoreHosted.checkInvariants() else { return nil }
        return "\(v.message) (0x\(String(v.address, radix: 16)))"
    }

    /// The size-class table, generated as Go's mksizeclasses does.
    public static var sizeClasses: [SizeClass] { SizeClass.table }
}
