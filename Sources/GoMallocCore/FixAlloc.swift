// FixAlloc.swift — fixed-size metadata allocation (spans, caches, bitmaps), never from malloc.
//
// Role: `PersistentAlloc` bumps through 256 KiB chunks of fresh mmap'd memory for metadata
//   that is never freed; `FixAlloc` hands out objects of one size from 16 KiB chunks of it,
//   keeping a free list so that freed metadata is reused (never returned to the OS).
// Go counterpart: mfixalloc.go (fixalloc), malloc.go (persistentalloc).
// Invariants:
//   I1. Every object handed out by a FixAlloc is `size` bytes and 8-byte aligned; zeroed
//       if the FixAlloc zeroes (fresh memory always is; reused objects are cleared unless
//       `zero` is false — Go's fixalloc.zero, off for metadata that others may read while it
//       is reused, which the user then initialises field by field).
//   I2. inuse == objects handed out - objects freed; sys == bytes taken from PersistentAlloc.
//   I3. Freed objects stay mapped and readable forever (so a stale MSpan pointer read from
//       the page map always reads some span's metadata, never unmapped memory).
// Concurrency: Guarded by the heap lock (the caller holds it).
// Failure: alloc returns nil when the OS refuses memory; state is unchanged.
import CGoMallocSys

/// Bump allocator over chunks of fresh OS memory. Go's persistentalloc.
struct PersistentAlloc {
    static let chunkBytes = 256 << 10
    /// Guarded by: heap lock.
    var next: UInt = 0
    /// Guarded by: heap lock.
    var end: UInt = 0
    /// Bytes obtained from the OS (statistics: metadata). Guarded by: heap lock.
    var sys: Int = 0

    /// `size` bytes aligned to `align` (a power of two <= 4096); zeroed (fresh from mmap).
    mutating func alloc(size: Int, align: Int) -> UnsafeMutableRawPointer? {
        if size >= PersistentAlloc.chunkBytes / 4 {
            // Big requests get their own mapping.
            guard let p = sysAlloc(size: size) else { return nil }
            sys &+= size
            return p
        }
        var p = (next &+ UInt(align) &- 1) & ~(UInt(align) &- 1)
        if next == 0 || p &+ UInt(size) > end {
            guard let chunk = sysAlloc(size: PersistentAlloc.chunkBytes) else { return nil }
            sys &+= PersistentAlloc.chunkBytes
            next = UInt(bitPattern: chunk)
            end = next &+ UInt(PersistentAlloc.chunkBytes)
            p = (next &+ UInt(align) &- 1) & ~(UInt(align) &- 1)
        }
        next = p &+ UInt(size)
        return UnsafeMutableRawPointer(bitPattern: p)
    }
}

/// A free-list allocator of fixed-size blocks. Go's fixalloc.
struct FixAlloc {
    /// Immutable after init.
    var size: Int = 0
    /// Clear reused objects. Immutable after init.
    var zero: Bool = true
    /// Free list threaded through the first word of each freed block. Guarded by: heap lock.
    var list: UnsafeMutableRawPointer? = nil
    /// The unused rest of the current chunk. Guarded by: heap lock.
    var chunk: UInt = 0
    var nchunk: Int = 0
    /// Objects handed out and not freed. Guarded by: heap lock.
    var inuse: Int = 0
    /// Bytes taken from the persistent allocator. Guarded by: heap lock.
    var sys: Int = 0

    init(size: Int, zero: Bool = true) {
        self.size = (size + 7) & ~7
        self.zero = zero
    }

    mutating func alloc(from persistent: inout PersistentAlloc) -> UnsafeMutableRawPointer? {
        if let p = list {
            list = p.load(as: UnsafeMutableRawPointer?.self)
            if zero { gm_sys_memset(p, 0, size) }
            inuse &+= 1
            return p
        }
        if nchunk < size {
            let chunkBytes = Swift.max(fixAllocChunk, size)
            guard let c = persistent.alloc(size: chunkBytes, align: cacheLineSize) else { return nil }
            chunk = UInt(bitPattern: c)
            nchunk = chunkBytes
            sys &+= chunkBytes
        }
        let p = UnsafeMutableRawPointer(bitPattern: chunk)!
        chunk &+= UInt(size)
        nchunk &-= size
        inuse &+= 1
        return p  // fresh persistent memory is already zero
    }

    mutating func free(_ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: list, as: UnsafeMutableRawPointer?.self)
        list = p
        inuse &-= 1
    }
}
