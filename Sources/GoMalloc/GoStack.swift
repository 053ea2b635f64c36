// GoStack.swift — the stack allocator's Swift API: stacks for coroutines, fibers and green
// threads from Go's stackpool, per-P stack caches and stackLarge (the core's Stack.swift).
import GoMallocCoreHosted

/// A stack from `GoAllocator.allocateStack(byteCount:)`. Stacks grow down: a new context's
/// stack pointer starts at `high`, and the usable bytes are `low..<high`. The value is a
/// handle (an address and a size; unchecked Sendable, as the addresses it holds are): a
/// stack may be freed by another thread than the one that allocated it, and synchronising
/// access to the stack's memory is the caller's business, as with any raw memory.
public struct GoStack: @unchecked Sendable, Hashable {
    /// The stack's lowest address, as the C API returns it (`gomalloc_stack_alloc`).
    public let base: UnsafeMutableRawPointer
    /// The stack's size: the request rounded up to a power of two, at least 2048.
    public let byteCount: Int
    /// Inaccessible bytes at the bottom (one OS page for stacks of 32 KiB or more with
    /// GOMALLOC_STACK_GUARD=1, else 0).
    public let guardBytes: Int

    /// The lowest usable address (`base + guardBytes`).
    public var low: UnsafeMutableRawPointer { base + guardBytes }
    /// One past the highest address: where the stack starts.
    public var high: UnsafeMutableRawPointer { base + byteCount }
    /// Usable bytes: `byteCount - guardBytes`.
    public var usableByteCount: Int { byteCount - guardBytes }
}

extension GoAllocator {
    /// A stack of at least `byteCount` bytes (rounded up to a power of two, at least 2048).
    /// Stacks of 2-16 KiB come from 32 KiB spans through the per-P stack cache, larger ones
    /// are spans of their own, reused after a free. Returns nil when out of memory.
    /// - Precondition: `0 < byteCount <= 1 GiB`.
    public static func allocateStack(byteCount: Int) -> GoStack? {
        let n = stackSize(forRequest: byteCount)
        precondition(n != 0, "GoAllocator.allocateStack: byteCount must be in 1...1 GiB")
        guard let (base, guardBytes) = allocateStackBytes(n) else { return nil }
        return GoStack(base: base, byteCount: n, guardBytes: guardBytes)
    }

    /// Give a stack back, exactly once; a stack that is not live aborts with
    /// `gomalloc: stack_free(): invalid stack 0x...`.
    public static func deallocateStack(_ stack: GoStack) {
        deallocateStackBytes(stack.base, size: stack.byteCount)
    }

    /// The memory side of Go's copystack: a stack twice as large, with the top
    /// `usedByteCount` bytes of `stack` copied to its top, and `stack` deallocated. The
    /// caller relocates its own pointers into the stack by `new.high - stack.high`. Returns
    /// nil (and `stack` stays live and unchanged) when there is no memory or the new size
    /// would exceed 1 GiB.
    /// - Precondition: `0 <= usedByteCount <= stack.usableByteCount`.
    public static func growStack(_ stack: GoStack, usedByteCount: Int) -> GoStack? {
        precondition(usedByteCount >= 0 && usedByteCount <= stack.usableByteCount,
                     "GoAllocator.growStack: usedByteCount out of the stack's usable range")
        guard let p = growStackBytes(stack.base, size: stack.byteCount, used: usedByteCount) else { return nil }
        let n = stack.byteCount * 2
        return GoStack(base: p, byteCount: n, guardBytes: stackGuardSize(n))
    }
}
