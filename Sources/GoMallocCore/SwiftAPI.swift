// SwiftAPI.swift — the core's entry points for the Swift library (the GoMalloc module).
//
// Role: the Swift API's rules — Swift's raw-pointer alignment (a power of two), nil instead
//   of errno — over the same malloc, free and realloc paths as the C ABI (CABI.swift).
// Go counterpart: none.
// Invariants: as Malloc.swift and Free.swift.
// Concurrency: as Malloc.swift.
// Failure: nil when out of memory; misuse aborts with one line, as from C.

import CGoMallocSys

/// Allocate with Swift's raw-pointer rules: `alignment` is a power of two; size classes serve
/// alignments they satisfy by construction, larger ones come from aligned classes or spans.
/// `containsPointers: false` selects the noscan span classes and, for 1-4 bytes, the tiny
/// allocator (whose objects are aligned to their rounded size, at least `alignment` here).
package func allocateBytes(_ size: Int, alignment: Int, zero: Bool, containsPointers: Bool = true) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return nil }
    let noscan = !containsPointers
    if alignment <= 8 { return mallocgc(Swift.max(size, alignment), cABI: false, zero: zero, noscan: noscan) }
    if alignment == 16 { return mallocgc(Swift.max(size, 9), cABI: true, zero: zero, noscan: noscan) }
    return mallocAligned(size, alignment: alignment, zero: zero, noscan: noscan)
}

package func deallocateBytes(_ ptr: UnsafeMutableRawPointer) {
    freeObject(ptr, function: "free")
}

/// Resize keeping the contents; nil (and the old block intact) when out of memory.
package func reallocateBytes(_ ptr: UnsafeMutableRawPointer, size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return nil }
    if alignment <= 16 { return reallocObject(ptr, size: Swift.max(size, 1), cABI: alignment == 16) }
    // Over-aligned: keep the block if it still fits, else move.
    let old = liveBlockSize(ptr, function: "realloc")
    if size <= old && UInt(bitPattern: ptr) % UInt(alignment) == 0 { return ptr }
    guard let new = mallocAligned(size, alignment: alignment, zero: false, noscan: blockIsNoscan(ptr)) else { return nil }
    gm_sys_memcpy(new, ptr, Swift.min(old, size))
    freeObject(ptr, function: "realloc")
    return new
}

package func usableBytes(_ ptr: UnsafeMutableRawPointer) -> Int {
    usableSize(ptr, function: "malloc_usable_size")
}

package func trimBytes() -> Int { trimHeap() &* pageSize }

// MARK: - Stacks (Stack.swift)

/// The size a stack request gets (a power of two >= 2048), or 0 if none (0, negative, > 1 GiB).
package func stackSize(forRequest n: Int) -> Int { stackRoundedSize(n) }

/// A stack of `n` bytes (a rounded size) and its guard bytes; nil when out of memory.
package func allocateStackBytes(_ n: Int) -> (base: UnsafeMutableRawPointer, guardBytes: Int)? {
    guard stackRoundedSize(n) == n, let h = heap(), let p = stackAlloc(h, size: n) else { return nil }
    return (p, stackGuardBytes(h, size: n))
}

/// Free a stack (misuse aborts with `stack_free(): invalid stack`).
package func deallocateStackBytes(_ base: UnsafeMutableRawPointer, size n: Int) {
    stackFree(UInt(bitPattern: base), size: n)
}

/// The memory side of copystack (Stack.swift stackGrow): nil leaves the old stack as it was.
package func growStackBytes(_ base: UnsafeMutableRawPointer, size n: Int, used: Int) -> UnsafeMutableRawPointer? {
    stackGrow(UInt(bitPattern: base), size: n, used: used)
}

/// The guard bytes of a stack of `n` (rounded) bytes.
package func stackGuardSize(_ n: Int) -> Int {
    guard let h = heap() else { return 0 }
    return stackGuardBytes(h, size: n)
}
