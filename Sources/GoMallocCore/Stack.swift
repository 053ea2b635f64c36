// Stack.swift — the stack allocator: stackpool, the per-P stack cache and stackLarge.
//
// Role: stacks for coroutine, fiber and green-thread runtimes, from the same heap as objects,
//   as Go allocates goroutine stacks. A stack is a power of two of at least 2 KiB
//   (fixedStack), at most 1 GiB, at an offset in its span that is a multiple of its size
//   (so aligned to its size up to the 8 KiB page). Two regimes:
//   * small stacks (2, 4, 8, 16 KiB: the four orders) are carved from 32 KiB manual spans
//     (stackCacheSize): stackpool[order] lists the spans of that order that have a free
//     stack; each P's mcache keeps a stack cache per order (Go's stackcache), refilled from
//     the pool by half its 32 KiB budget when empty and drained back to half when full, so
//     a thread that allocates and frees stacks touches no lock in the steady state. A pool
//     span whose stacks are all back in the pool returns to the heap at once (Go does so
//     outside a GC cycle; we have no cycle).
//   * large stacks (32 KiB and more) are spans of their own; freed ones wait in stackLarge
//     (a list per log2 of the page count) for a stack of the same size, up to
//     stackLargeRetainBytes in all; past that, and on trim, they go back to the heap.
//   Stack spans are manual spans (SpanState.manual, SpanKind.stack): every page maps to the
//   span, so free(), realloc() and malloc_usable_size() of any address inside a stack are
//   invalid pointers, and the heap's statistics count them apart (StackInuse, not HeapInuse).
//   With GOMALLOC_STACK_GUARD=1 the lowest OS page of each large stack is PROT_NONE while
//   the stack is live or waiting in stackLarge; the usable part is [lo + guard, lo + size).
// Go counterpart: stack.go (stackinit, stackpoolalloc, stackpoolfree, stackcacherefill,
//   stackcacherelease, stackcache_clear, stackalloc, stackfree, copystack's memory side),
//   mheap.go (allocManual, freeManual), mcache.go (stackcache).
// Invariants:
//   I1. A stack span has kind stack, state manual, span class 0, elemSize = its stack size
//       (a power of two >= fixedStack), nelems = npages * pageSize / elemSize; a small
//       stack span is stackCacheSize bytes, a large one holds one stack.
//   I2. Each stack of a stack span is in exactly one place: live (its bit in allocBits word
//       0), free in its pool span (its bit in freeBits word 0; small spans only), in one
//       P's stack cache (neither bit), or — a large span's one stack — on stackLarge
//       (neither bit).
//   I3. A small stack span is on stackpool[order].spans iff its freeBits word is not zero;
//       it is never all free (it would have gone back to the heap).
//   I4. MHeap.HeapLocked.stackPages * pageSize == live + cached + pool free + stackLarge
//       bytes; the per-P counters, the pool's freeBytes and stackLarge's bytes agree with
//       the bits and the lists (checkInvariants recounts them).
//   I5. A P's stack cache for an order holds at most stackCacheCapacity entries and at most
//       stackCacheSize bytes.
// Concurrency: every operation holds a P (taken first: P < stackpool < stackLarge < mheap)
//   from its first change to its last, so a stopped world (every P) sees no operation half
//   done. The P's stack cache is its holder's alone. stackpool[order] (its span list, the
//   freeBits of its spans) is guarded by that order's lock, under which the heap lock is
//   taken to get or return a span, as Go's stackpoolalloc does; stackLarge by its lock,
//   never held with the heap lock. The live bits are changed only by atomic
//   read-modify-writes (fetch-or on alloc, fetch-and on free; acquire-release), which is
//   what lets two threads freeing the same stack disagree safely: exactly one clears the
//   bit, the other reports. The page map is read without a lock, as free() reads it.
//   Statistics counters are relaxed atomics with one writer each (the P's holder, or
//   the lock holder), exact once the world is stopped.
// Failure: allocation returns nil when the heap cannot grow, the metadata allocator cannot,
//   or a guard page cannot be set (the kernel's mapping limit); the caller sets errno.
//   Freeing anything that is not a live stack of the size given reports
//   `gomalloc: stack_free(): invalid stack 0x...` and aborts, holding nothing.
import CGoMallocSys
import Synchronization

/// The smallest stack, and the unit of the orders (Go's _FixedStack on Linux).
let fixedStack = 2048
/// Small stack sizes: fixedStack << order for order 0..<numStackOrders (Go's _NumStackOrders).
let numStackOrders = 4
/// Bytes of a stackpool span, and a P's stack cache budget per order (Go's _StackCacheSize).
let stackCacheSize = 32768
/// The most entries a P's stack cache can hold for one order (order 0 at its budget).
let stackCacheCapacity = stackCacheSize / fixedStack
/// The largest stack gomalloc_stack_alloc gives.
let maxStackSize = 1 << 30
/// stackLarge's lists, by log2 of the page count (a 1 GiB stack has 2^17 pages).
let stackLargeLists = 31 - pageShift
/// Free large stacks kept for reuse, in bytes over all sizes; the rest go back to the heap.
let stackLargeRetainBytes = 16 << 20

/// A P's stack cache for one order (Go's stackfreelist): a LIFO of stack addresses. Held in
/// the mcache, so the cache never writes into the stacks it holds (Go links them through
/// their first word).
struct StackCacheList {
    var count: Int = 0
    var entries: InlineArray<16, UInt> = InlineArray(repeating: 0)
}

/// stackpool[order] (Go's stackpoolItem), padded to its own cache lines.
struct StackPoolItem: ~Copyable {
    let lock: RuntimeLock
    /// Bytes of the free stacks in its spans. Written under lock; statistics read it
    /// (relaxed).
    let freeBytes: Atomic<Int>
    // The spans of this order with at least one free stack (I3), guarded by lock, follow at
    // spansOffset in the same padded slot (`spans`): a change to them is never an access
    // to this struct, whose lock other threads are taking meanwhile (as MCentral's lists).
    static let spansOffset = 64

    init() {
        lock = RuntimeLock(rank: .stackpool)
        freeBytes = Atomic(0)
    }
}

extension UnsafeMutablePointer where Pointee == StackPoolItem {
    /// The pool's spans with a free stack. Caller holds the lock.
    @inline(__always)
    var spans: UnsafeMutablePointer<SpanList> {
        (UnsafeMutableRawPointer(self) + StackPoolItem.spansOffset).assumingMemoryBound(to: SpanList.self)
    }
}

/// Go's stackLarge: free large stack spans by log2 of their page count.
struct StackLarge: ~Copyable {
    let lock: RuntimeLock
    /// Bytes of the stacks on the lists. Written under lock; statistics read it (relaxed).
    let bytes: Atomic<Int>
    // The stackLargeLists lists, guarded by lock, follow at listsOffset (`freeList(_:)`),
    // apart from the lock for the same reason as StackPoolItem's spans.
    static let listsOffset = 64

    init() {
        lock = RuntimeLock(rank: .stackLarge)
        bytes = Atomic(0)
    }
}

extension UnsafeMutablePointer where Pointee == StackLarge {
    /// The free large stack spans of 2^i pages. Caller holds the lock.
    @inline(__always)
    func freeList(_ i: Int) -> UnsafeMutablePointer<SpanList> {
        (UnsafeMutableRawPointer(self) + StackLarge.listsOffset).assumingMemoryBound(to: SpanList.self) + i
    }
}

extension Atomic where Value == Int {
    /// Add `delta` (wrapping) to a counter with one writer at a time (its lock's holder):
    /// a relaxed load and store, no locked read-modify-write; readers (statistics) load it
    /// relaxed.
    @inline(__always)
    func addWithOneWriter(_ delta: Int) {
        store(load(ordering: .relaxed) &+ delta, ordering: .relaxed)
    }
}

/// Where the stack allocator's shared state sits in its metadata block (MHeap.stackState).
let stackPoolStride = 128
let stackLargeOffset = numStackOrders * stackPoolStride
let stackStateBytes = stackLargeOffset + ((StackLarge.listsOffset + stackLargeLists * MemoryLayout<SpanList>.stride + 127) & ~127)

/// The stack allocator's per-P counters (Proc.swift): stacks handed out and taken back
/// through this P, their bytes, and the bytes in this P's stack cache now.
enum StackCounter: Int {
    case allocs = 0
    case frees = 1
    case allocBytes = 2
    case freeBytes = 3
    case cachedBytes = 4
    static let count = 5
}

/// The size a request of `n` bytes gets (a power of two >= fixedStack), or 0 if there is no
/// such stack (0 bytes, negative, more than maxStackSize).
@inline(__always)
func stackRoundedSize(_ n: Int) -> Int {
    if n <= 0 || n > maxStackSize { return 0 }
    if n <= fixedStack { return fixedStack }
    return 1 << (Int.bitWidth - (n &- 1).leadingZeroBitCount)
}

/// The inaccessible bytes at the bottom of a stack of `size` (a rounded size): the guard
/// page (MHeap.stackGuardBytes: one OS page, or 0 when off or when OS pages are larger than
/// ours, which would not align with a span's start) for stacks of 32 KiB and more.
@inline(__always)
func stackGuardBytes(_ h: UnsafeMutablePointer<MHeap>, size: Int) -> Int {
    size >= stackCacheSize ? h.pointee.stackGuardBytes : 0
}

extension UnsafeMutablePointer where Pointee == MHeap {
    @inline(__always)
    func stackPool(_ order: Int) -> UnsafeMutablePointer<StackPoolItem> {
        (pointee.stackState + order &* stackPoolStride).assumingMemoryBound(to: StackPoolItem.self)
    }

    @inline(__always)
    var stackLarge: UnsafeMutablePointer<StackLarge> {
        (pointee.stackState + stackLargeOffset).assumingMemoryBound(to: StackLarge.self)
    }

    /// Take every stack lock (a stopping world, after every P) and give them back.
    func lockStacks() {
        for o in 0..<numStackOrders { stackPool(o).pointee.lock.lock() }
        stackLarge.pointee.lock.lock()
    }

    func unlockStacks() {
        stackLarge.pointee.lock.unlock()
        for o in 0..<numStackOrders { stackPool(o).pointee.lock.unlock() }
    }
}

extension UnsafeMutablePointer where Pointee == MSpan {
    /// A stack span (I1)?
    @inline(__always) var isStack: Bool { pointee.kindWord.load(ordering: .relaxed) == SpanKind.stack }
    /// The stack size of a stack span.
    @inline(__always) var stackSize: Int { Int(pointee.elemSizeWord) }

    /// The live bits of a stack span (allocBits word 0, I2): atomic read-modify-writes only.
    @inline(__always)
    var stackLiveWord: UnsafeMutablePointer<Atomic<UInt64>> { allocBits.word(0) }
}

extension UnsafeMutablePointer where Pointee == PSlot {
    /// The stack counters (StackCounter), after the tiny allocator's.
    @inline(__always)
    var stackCounters: AtomicWords {
        AtomicWords(base: (UnsafeMutableRawPointer(self) + pSlotHeaderBytes
            + (numSpanClasses &+ freeCounterWords &+ TinyCounter.count) &* 8).assumingMemoryBound(to: UInt64.self))
    }

    /// Add `delta` (wrapping) to a stack counter. Caller holds the P (the only writer).
    @inline(__always)
    func countStack(_ which: StackCounter, _ delta: Int) {
        bump(stackCounters.word(which.rawValue), by: UInt64(bitPattern: Int64(delta)))
    }
}

// MARK: - Allocation (Go's stackalloc)

/// A stack of `n` bytes (a rounded size: stackRoundedSize), its low address; nil when out
/// of memory.
func stackAlloc(_ h: UnsafeMutablePointer<MHeap>, size n: Int) -> UnsafeMutableRawPointer? {
    let slot = h.acquireP()
    var x: UInt = 0
    if n < stackCacheSize {
        let order = (n >> 11).trailingZeroBitCount
        if let c = mcacheOf(h, slot) {
            x = c.popStack(order)
            if x == 0 {
                h.refillStackCache(c, order: order)
                x = c.popStack(order)
            }
            if x != 0 { slot.countStack(.cachedBytes, -n) }
        } else {
            // No mcache (its metadata could not be mapped): straight from the pool, as
            // Go's stackalloc does without an mcache.
            let pool = h.stackPool(order)
            pool.pointee.lock.lock()
            x = h.stackPoolAllocLocked(order)
            pool.pointee.lock.unlock()
        }
    } else {
        x = h.stackLargeAlloc(n)
    }
    if x == 0 {
        h.releaseP(slot)
        return nil
    }
    let s = h.spanOf(x).unsafelyUnwrapped
    let bit = UInt64(1) << UInt64((x &- s.pointee.startAddr) >> UInt(n.trailingZeroBitCount))
    s.stackLiveWord.pointee.bitwiseOr(bit, ordering: .acquiringAndReleasing)
    slot.countStack(.allocs, 1)
    slot.countStack(.allocBytes, n)
    h.releaseP(slot)
    return UnsafeMutableRawPointer(bitPattern: x)
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// A free large stack of `n` bytes: from stackLarge, else a fresh span (guarded if
    /// asked). 0 when out of memory. Caller holds a P.
    fileprivate func stackLargeAlloc(_ n: Int) -> UInt {
        let npages = n >> pageShift
        let large = stackLarge
        large.pointee.lock.lock()
        let reused = large.freeList(npages.trailingZeroBitCount).pointee.popFront()
        if reused != nil { large.pointee.bytes.addWithOneWriter(0 &- n) }
        large.pointee.lock.unlock()
        if let s = reused { return s.pointee.startAddr }
        guard let s = allocStackSpan(npages: npages, stackSize: n) else { return 0 }
        let g = stackGuardBytes(self, size: n)
        if g != 0 && !sysGuard(s.pointee.startAddr, size: g) {
            freeSpan(s)
            return 0
        }
        return s.pointee.startAddr
    }

    /// Go's stackpoolalloc: a free stack of `order` from the pool, taking a new span from
    /// the heap if no span has one. 0 when out of memory. Caller holds the order's lock.
    fileprivate func stackPoolAllocLocked(_ order: Int) -> UInt {
        let pool = stackPool(order)
        let size = fixedStack << order
        var span = pool.spans.pointee.first
        if span == nil {
            guard let s = allocStackSpan(npages: stackCacheSize >> pageShift, stackSize: size) else { return 0 }
            s.freeBits[0] = (UInt64(1) << UInt64(s.nelems)) &- 1
            pool.spans.pointee.pushBack(s)
            pool.pointee.freeBytes.addWithOneWriter(stackCacheSize)
            span = s
        }
        let s = span.unsafelyUnwrapped
        let bits = s.freeBits[0]
        let k = bits.trailingZeroBitCount
        s.freeBits[0] = bits & (bits &- 1)
        if bits & (bits &- 1) == 0 { pool.spans.pointee.remove(s) }
        pool.pointee.freeBytes.addWithOneWriter(0 &- size)
        return s.pointee.startAddr &+ UInt(k &* size)
    }

    /// Go's stackpoolfree: stack `x` of span `s` back to the pool; the span goes back to
    /// the heap once all its stacks are. Caller holds the order's lock.
    fileprivate func stackPoolFreeLocked(_ x: UInt, _ s: UnsafeMutablePointer<MSpan>, order: Int) {
        let pool = stackPool(order)
        let size = fixedStack << order
        let bits = s.freeBits[0]
        let now = bits | UInt64(1) << UInt64((x &- s.pointee.startAddr) >> UInt(size.trailingZeroBitCount))
        if bits == 0 { pool.spans.pointee.pushBack(s) }
        if now == (UInt64(1) << UInt64(s.nelems)) &- 1 {
            pool.spans.pointee.remove(s)
            pool.pointee.freeBytes.addWithOneWriter(size &- stackCacheSize)
            s.freeBits[0] = 0
            freeSpan(s)
        } else {
            s.freeBits[0] = now
            pool.pointee.freeBytes.addWithOneWriter(size)
        }
    }

    /// Go's stackcacherefill: fill `c`'s cache of `order` to half its budget from the pool.
    /// Caller holds the cache's P.
    fileprivate func refillStackCache(_ c: UnsafeMutablePointer<MCache>, order: Int) {
        let size = fixedStack << order
        let pool = stackPool(order)
        var added = 0
        pool.pointee.lock.lock()
        while (c.pointee.stackCache[order].count &+ 1) &* size <= stackCacheSize / 2 {
            let x = stackPoolAllocLocked(order)
            if x == 0 { break }
            c.pushStack(order, x)
            added &+= size
        }
        pool.pointee.lock.unlock()
        c.pointee.p.countStack(.cachedBytes, added)
    }

    /// Go's stackcacherelease: drain `c`'s cache of `order` to below half its budget.
    /// Caller holds the cache's P.
    fileprivate func releaseStackCache(_ c: UnsafeMutablePointer<MCache>, order: Int, keepBytes: Int) {
        let size = fixedStack << order
        let pool = stackPool(order)
        var removed = 0
        pool.pointee.lock.lock()
        while c.pointee.stackCache[order].count &* size > keepBytes {
            let x = c.popStack(order)
            stackPoolFreeLocked(x, spanOf(x).unsafelyUnwrapped, order: order)
            removed &+= size
        }
        pool.pointee.lock.unlock()
        c.pointee.p.countStack(.cachedBytes, -removed)
    }

    /// Go's stackcache_clear for one P: every cached stack back to the pool (trim). Caller
    /// holds the P.
    func flushStackCache(_ c: UnsafeMutablePointer<MCache>) {
        for o in 0..<numStackOrders where c.pointee.stackCache[o].count != 0 {
            releaseStackCache(c, order: o, keepBytes: 0)
        }
    }

    /// Every span on stackLarge back to the heap (trim). Holds no lock on entry.
    func releaseStackLarge() {
        let large = stackLarge
        while true {
            large.pointee.lock.lock()
            var s: UnsafeMutablePointer<MSpan>? = nil
            for i in 0..<stackLargeLists where s == nil { s = large.freeList(i).pointee.popFront() }
            if let s { large.pointee.bytes.addWithOneWriter(0 &- s.stackSize) }
            large.pointee.lock.unlock()
            guard let s else { return }
            if !returnLargeStackSpan(s) { return }
        }
    }

    /// A large stack span back to the heap, its guard page readable again. false (and the
    /// span back on stackLarge, whatever its budget) if the kernel refuses to lift the guard.
    fileprivate func returnLargeStackSpan(_ s: UnsafeMutablePointer<MSpan>) -> Bool {
        let g = stackGuardBytes(self, size: s.stackSize)
        if g != 0 && !sysUnguard(s.pointee.startAddr, size: g) {
            let large = stackLarge
            large.pointee.lock.lock()
            large.freeList(s.pointee.npages.trailingZeroBitCount).pointee.pushFront(s)
            large.pointee.bytes.addWithOneWriter(s.stackSize)
            large.pointee.lock.unlock()
            return false
        }
        freeSpan(s)
        return true
    }
}

// MARK: - Free (Go's stackfree)

/// Free the stack at `lo` of `size` bytes as asked for at allocation; anything that is not
/// a live stack of that size is reported (Failure) and aborts.
func stackFree(_ lo: UInt, size: Int) {
    let n = stackRoundedSize(size)
    guard let h = theHeap(), let (s, bit) = stackSlot(h, lo, size: n)
    else { reportBadPointer(function: "stack_free", problem: "invalid stack", address: lo) }
    let slot = h.acquireP()
    // The one decisive check: of two frees of one stack, one clears the bit (I2).
    if s.stackLiveWord.pointee.bitwiseAnd(~bit, ordering: .acquiringAndReleasing).oldValue & bit == 0 {
        h.releaseP(slot)
        reportBadPointer(function: "stack_free", problem: "invalid stack", address: lo)
    }
    slot.countStack(.frees, 1)
    slot.countStack(.freeBytes, n)
    if n < stackCacheSize {
        let order = (n >> 11).trailingZeroBitCount
        if let c = mcacheOf(h, slot) {
            if c.pointee.stackCache[order].count &* n >= stackCacheSize {
                h.releaseStackCache(c, order: order, keepBytes: stackCacheSize / 2 &- n)
            }
            c.pushStack(order, lo)
            slot.countStack(.cachedBytes, n)
        } else {
            let pool = h.stackPool(order)
            pool.pointee.lock.lock()
            h.stackPoolFreeLocked(lo, s, order: order)
            pool.pointee.lock.unlock()
        }
    } else {
        let large = h.stackLarge
        large.pointee.lock.lock()
        let kept = large.pointee.bytes.load(ordering: .relaxed)
        if kept &+ n <= stackLargeRetainBytes {
            large.freeList(s.pointee.npages.trailingZeroBitCount).pointee.pushFront(s)
            large.pointee.bytes.store(kept &+ n, ordering: .relaxed)
            large.pointee.lock.unlock()
        } else {
            large.pointee.lock.unlock()
            _ = h.returnLargeStackSpan(s)
        }
    }
    h.releaseP(slot)
}

/// The stack span and live bit of the stack of `n` (rounded; 0 for none) bytes at `lo`, or
/// nil when `lo` is not where such a stack starts. The page map is read without a lock,
/// state first (acquire), as free() reads it; whether the stack is live is the caller's
/// question (the bit).
private func stackSlot(_ h: UnsafeMutablePointer<MHeap>, _ lo: UInt, size n: Int)
    -> (span: UnsafeMutablePointer<MSpan>, bit: UInt64)?
{
    guard n != 0, let s = h.spanOf(lo),
          s.pointee.state.load(ordering: .acquiring) == SpanState.manual.rawValue, s.isStack,
          s.stackSize == n, lo >= s.pointee.startAddr, (lo &- s.pointee.startAddr) & UInt(n &- 1) == 0
    else { return nil }
    let k = Int((lo &- s.pointee.startAddr) >> UInt(n.trailingZeroBitCount))
    return k < s.nelems ? (s, UInt64(1) << UInt64(k)) : nil
}

/// Whether `lo` is a live stack of `n` (rounded) bytes. Holds nothing; a snapshot (the
/// answer can change as soon as it is given, if another thread frees the stack).
func stackIsLive(_ lo: UInt, size n: Int) -> Bool {
    guard let h = theHeap(), let (s, bit) = stackSlot(h, lo, size: n) else { return false }
    return s.stackLiveWord.pointee.load(ordering: .acquiring) & bit != 0
}

// MARK: - Growth (the memory side of Go's copystack)

/// Move the stack at `lo` (`size` bytes as asked for) to one twice its rounded size, copying
/// its top `used` bytes to the top of the new one, and free the old. The new stack's low
/// address, or nil (the old stack untouched; errno: EINVAL if `used` exceeds the usable size,
/// ENOMEM if the new stack cannot be had). Stacks grow down: the used part is the top.
func stackGrow(_ lo: UInt, size: Int, used: Int) -> UnsafeMutableRawPointer? {
    let n = stackRoundedSize(size)
    guard let h = heap() else { gm_sys_set_errno(ENOMEM); return nil }
    if !stackIsLive(lo, size: n) { reportBadPointer(function: "stack_grow", problem: "invalid stack", address: lo) }
    if used < 0 || used > n &- stackGuardBytes(h, size: n) { gm_sys_set_errno(EINVAL); return nil }
    if n > maxStackSize / 2 { gm_sys_set_errno(ENOMEM); return nil }
    guard let p = stackAlloc(h, size: 2 &* n) else { gm_sys_set_errno(ENOMEM); return nil }
    if used > 0 {
        gm_sys_memcpy(p + (2 &* n &- used), UnsafeRawPointer(bitPattern: lo &+ UInt(n &- used)), used)
    }
    stackFree(lo, size: n)
    return p
}

// MARK: - The P's stack cache (owner: the P's holder)

extension UnsafeMutablePointer where Pointee == MCache {
    /// Pop a cached stack of `order`, or 0.
    @inline(__always)
    func popStack(_ order: Int) -> UInt {
        let n = pointee.stackCache[order].count
        if n == 0 { return 0 }
        pointee.stackCache[order].count = n &- 1
        return pointee.stackCache[order].entries[n &- 1]
    }

    /// Push a stack of `order` (there is room: I5, kept by the callers).
    @inline(__always)
    func pushStack(_ order: Int, _ x: UInt) {
        let n = pointee.stackCache[order].count
        pointee.stackCache[order].entries[n] = x
        pointee.stackCache[order].count = n &+ 1
    }
}

// MARK: - Statistics

/// The stack allocator's figures for MemStats (Go's StackInuse, StackSys and their parts).
struct StackStats {
    var allocs: UInt64 = 0
    var frees: UInt64 = 0
    /// Bytes of stacks handed out and not freed.
    var liveBytes: UInt64 = 0
    /// Bytes in the Ps' stack caches, free in pool spans, waiting on stackLarge.
    var cachedBytes: UInt64 = 0
    var poolFreeBytes: UInt64 = 0
    var largeFreeBytes: UInt64 = 0
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// Sum the counters (relaxed loads: exact once the world is stopped).
    func readStackStats() -> StackStats {
        var st = StackStats()
        var allocBytes: UInt64 = 0, freeBytes: UInt64 = 0
        for i in 0..<pointee.nprocs {
            let c = proc(i).stackCounters
            st.allocs &+= c[StackCounter.allocs.rawValue]
            st.frees &+= c[StackCounter.frees.rawValue]
            allocBytes &+= c[StackCounter.allocBytes.rawValue]
            freeBytes &+= c[StackCounter.freeBytes.rawValue]
            st.cachedBytes &+= c[StackCounter.cachedBytes.rawValue]
        }
        st.liveBytes = allocBytes &- freeBytes
        for o in 0..<numStackOrders {
            st.poolFreeBytes &+= UInt64(stackPool(o).pointee.freeBytes.load(ordering: .relaxed))
        }
        st.largeFreeBytes = UInt64(stackLarge.pointee.bytes.load(ordering: .relaxed))
        return st
    }
}
