// MSpan.swift — a run of pages cut into equal objects, with Go's allocation bitmaps.
//
// Role: the unit the heap hands out. A small-object span of span class c holds nelems
//   objects of elemSize bytes; a large span holds one object; a manual span holds stacks.
//   Allocation scans allocBits through the 64-bit allocCache window (Go's nextFreeFast);
//   free (explicit here; a GC in Go) records bits that a sweep merges back into allocBits.
// Go counterpart: mheap.go (mspan), mbitmap.go (allocBits, refillAllocCache, nextFreeIndex),
//   mgcsweep.go (sweep).
//
// The three bitmaps of a small span (one bit per object, word w covers objects 64w..64w+63):
//   allocBits  — 1 = allocated as of the last sweep. Objects below freeIndex are allocated
//                whatever their bit says (the scan handed them out; Go does the same).
//   freeBits   — 1 = freed since the last sweep by the P that caches the span: plain stores.
//   remoteBits — 1 = freed since the last sweep by anyone else: atomic fetch-or only.
//   (Go's gcmarkBits become allocBits at sweep; ours: allocBits &= ~(freeBits | remoteBits).)
// An object i is live iff (i < freeIndex || allocBits[i]) && !freeBits[i] && !remoteBits[i].
//
// Invariants:
//   I1. startAddr is page-aligned; the span covers [startAddr, startAddr + npages * pageSize).
//   I2. Small span: nelems == (npages * pageSize) / elemSize; 0 <= freeIndex <= nelems.
//   I3. allocCache holds the complement of allocBits from bit freeIndex of its word onwards,
//       shifted so that bit 0 is object freeIndex — or 0 when freeIndex sits on a word boundary
//       the fast path reached without refilling (nextFreeIndex refills it).
//   I3b. allocBits bits at and above nelems are 1 ("allocated"), so the cache never offers a
//       slot past the end and nextFreeFast needs no bounds check.
//   I4. After a sweep: freeBits == 0, allocCount == popcount(allocBits), freeIndex == 0.
//   I5. A bit is never set in both freeBits and remoteBits (that is a double free, reported).
//   I6. location is cached(p) only while span is mcache[p].alloc[spanClass] or on
//       mcache[p].retired[spanClass]; partial/full
//       only while it sits on that list of its mcentral.
//   I7. remoteFreeCount == popcount(remoteBits), except while a remote free is between
//       setting its bit and counting it (it holds a P meanwhile: a stopped world sees the
//       equality) — a sweep that merges such a bit first leaves the count below, even < 0.
// Concurrency: fields are tagged. "Owner" = the P whose mcache holds the span (its holder
//   thread), or the mcentral lock while the span is on a central list.
// Failure: none here; bad frees are detected by the caller (Malloc.swift) and reported.
import CGoMallocSys
import Synchronization

/// What a span is used for. Legal transitions: free -> inUse -> free, free -> manual -> free.
enum SpanState: UInt32 {
    case free = 0
    case inUse = 1
    case manual = 2
}

/// Where a small span sits: 0, 1, 2, or the address of the P slot whose mcache holds it.
/// Legal transitions (all under the mcentral lock):
///   none -> cached(p)            (new span from the heap goes straight into a cache)
///   cached(p) -> partial | full  (uncached), partial | full -> cached(p), partial <-> full,
///   partial | full | cached -> none (span returned to the heap).
enum SpanLocation {
    static let none: UInt = 0
    static let partial: UInt = 1
    static let full: UInt = 2
    @inline(__always) static func cached(_ slot: UnsafeMutablePointer<PSlot>) -> UInt { UInt(bitPattern: slot) }
}

struct MSpan: ~Copyable {
    // MARK: - Hot fields (read on every malloc from this span)

    /// Complement of allocBits starting at freeIndex; ctz finds the next free object. Owner.
    var allocCache: UInt64
    /// Objects below freeIndex are allocated; the scan resumes here. Owner.
    var freeIndex: Int
    /// Number of objects in the span. Immutable while in use.
    var nelems: Int
    /// Object size. Immutable while in use.
    var elemSize: Int
    /// First byte of the span. Immutable while in use.
    var startAddr: UInt
    /// Objects allocated as of the last sweep plus those handed out since. Owner.
    var allocCount: Int

    // MARK: - Bitmaps (3 * bitmapWords words: allocBits, freeBits, remoteBits)

    /// Owner (allocBits and freeBits words); remoteBits words are Atomic: fetch-or / exchange.
    var bits: UnsafeMutablePointer<UInt64>?
    /// Words per bitmap. Immutable while in use.
    var bitmapWords: Int
    /// bits + bitmapWords: the freeBits words, kept so the free fast path need not compute it.
    /// Immutable while in use.
    var freeBitsBase: UnsafeMutablePointer<UInt64>?

    // MARK: - Cold fields

    var npages: Int
    /// Go 1.17's divMagic: index = (offset * divMul) >> 32. Immutable while in use.
    var divMul: UInt32
    var spanClass: SpanClass
    /// True when some object may hold old data (calloc must clear it). Owner.
    var needzero: Bool
    /// Frees recorded in freeBits since the last sweep. Owner.
    var localFreeCount: Int
    /// Central list links. Guarded by: mcentral lock.
    var next: UnsafeMutablePointer<MSpan>?
    var prev: UnsafeMutablePointer<MSpan>?
    /// SpanState. Atomic: written under the heap lock (acquire/release); large spans CAS
    /// inUse -> free in free() to catch double frees without a lock.
    let state: Atomic<UInt32>
    /// SpanLocation. Atomic: written under the mcentral lock, read by remote freers (seq_cst).
    let location: Atomic<UInt>
    /// Bits set in remoteBits and not yet merged. Atomic (seq_cst): may dip below zero
    /// transiently while a sweep races a freer; see sweep().
    let remoteFreeCount: Atomic<Int>

    init() {
        allocCache = 0; freeIndex = 0; nelems = 0; elemSize = 0; startAddr = 0; allocCount = 0
        bits = nil; bitmapWords = 0; freeBitsBase = nil; npages = 0; divMul = 0; spanClass = SpanClass(raw: 0)
        needzero = false; localFreeCount = 0; next = nil; prev = nil
        state = Atomic(SpanState.free.rawValue)
        location = Atomic(SpanLocation.none)
        remoteFreeCount = Atomic(0)
    }

    @inline(__always) var base: UInt { startAddr }
    @inline(__always) var limit: UInt { startAddr &+ UInt(npages &* pageSize) }
    @inline(__always) var allocBits: UnsafeMutablePointer<UInt64> { bits.unsafelyUnwrapped }
    @inline(__always) var freeBits: UnsafeMutablePointer<UInt64> { freeBitsBase.unsafelyUnwrapped }
    @inline(__always) var remoteBits: UnsafeMutablePointer<UInt64> { bits.unsafelyUnwrapped + 2 &* bitmapWords }

    @inline(__always)
    func remoteWord(_ w: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutableRawPointer(remoteBits + w).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// The bits of allocBits word `w` at or above `nelems` (I3b).
    @inline(__always)
    static func tailMask(word w: Int, nelems: Int) -> UInt64 {
        let valid = nelems &- w &* 64
        if valid >= 64 { return 0 }
        if valid <= 0 { return ~0 }
        return ~((UInt64(1) << UInt64(valid)) &- 1)
    }

    /// Words needed for one bitmap of `nelems` bits, rounded up to a power of two
    /// (so that bitmaps come from five fixallocs: 1, 2, 4, 8, 16 words).
    static func bitmapWords(for nelems: Int) -> Int {
        let w = Swift.max(1, (nelems + 63) / 64)
        return w <= 1 ? 1 : 1 << (Int.bitWidth - (w - 1).leadingZeroBitCount)
    }

    // MARK: - Object index by multiplication

    /// Index of the object containing `addr` (no division: Go's divMagic).
    @inline(__always)
    func objIndex(_ addr: UInt) -> Int {
        Int(truncatingIfNeeded: (UInt64(addr &- startAddr) &* UInt64(divMul)) >> 32)
    }

    // MARK: - Fast path

    /// Go's nextFreeFast: the next free object from the allocCache window, or 0 on a miss.
    /// Unlike Go's it needs no `result < nelems` test (I3b) and may stop on a word boundary
    /// with an empty cache (I3): nextFreeIndex refills it there.
    @inline(__always)
    mutating func nextFreeFast() -> UInt {
        let cache = allocCache
        let theBit = cache.trailingZeroBitCount
        if theBit < 64 {
            let result = freeIndex &+ theBit
            allocCache = (cache &>> UInt64(theBit)) &>> 1
            freeIndex = result &+ 1
            allocCount &+= 1
            return startAddr &+ UInt(bitPattern: result &* elemSize)
        }
        return 0
    }

    // MARK: - Slow path (partner of nextFreeFast)

    /// Load allocCache with the complement of the allocBits word holding object `index`
    /// (a multiple of 64). Go's refillAllocCache.
    @inline(__always)
    mutating func refillAllocCache(_ index: Int) {
        allocCache = ~allocBits[index >> 6]
    }

    /// Go's nextFreeIndex: the index of the next free object at or after freeIndex, or nelems.
    @inline(never)
    mutating func nextFreeIndex() -> Int {
        var sfreeindex = freeIndex
        let snelems = nelems
        if sfreeindex >= snelems { return snelems }
        // The fast path can leave freeIndex on a word boundary with the cache used up.
        if sfreeindex & 63 == 0 { refillAllocCache(sfreeindex) }
        var aCache = allocCache
        var bitIndex = aCache.trailingZeroBitCount
        while bitIndex == 64 {
            sfreeindex = (sfreeindex &+ 64) & ~63
            if sfreeindex >= snelems {
                freeIndex = snelems
                return snelems
            }
            refillAllocCache(sfreeindex)
            aCache = allocCache
            bitIndex = aCache.trailingZeroBitCount
        }
        let result = sfreeindex &+ bitIndex
        if result >= snelems {
            freeIndex = snelems
            return snelems
        }
        allocCache = (aCache &>> UInt64(bitIndex)) &>> 1
        sfreeindex = result &+ 1
        if sfreeindex & 63 == 0 && sfreeindex != snelems {
            refillAllocCache(sfreeindex)
        }
        freeIndex = sfreeindex
        return result
    }

    /// The sweep: merge freeBits and remoteBits into allocBits, restart the scan at 0.
    /// Returns the number of objects reclaimed. Caller is the owner (the caching P, or the
    /// mcentral lock holder). A bit freed both locally and remotely is a double free:
    /// it is reported and the process aborts.
    mutating func sweep() -> Int {
        let nw = bitmapWords
        let a = allocBits, f = freeBits
        var live = 0
        var reclaimed = 0
        var remoteMerged = 0
        for w in 0..<nw {
            let lo = w &* 64
            var word = a[w]
            // Everything below freeIndex was handed out.
            if freeIndex >= lo &+ 64 {
                word = ~0
            } else if freeIndex > lo {
                word |= (UInt64(1) << UInt64(freeIndex &- lo)) &- 1
            }
            let local = f[w]
            f[w] = 0
            let remote = remoteWord(w).pointee.load(ordering: .relaxed) == 0
                ? 0 : remoteWord(w).pointee.exchange(0, ordering: .acquiring)
            if local & remote != 0 {
                let i = lo &+ (local & remote).trailingZeroBitCount
                reportBadPointer(function: "free", problem: "double free",
                                 address: startAddr &+ UInt(bitPattern: i &* elemSize))
            }
            let freed = local | remote
            if freed & ~word != 0 {
                let i = lo &+ (freed & ~word).trailingZeroBitCount
                reportBadPointer(function: "free", problem: "invalid pointer",
                                 address: startAddr &+ UInt(bitPattern: i &* elemSize))
            }
            word &= ~freed
            // Bits past nelems stay set (I3b) and are not objects.
            let tail = MSpan.tailMask(word: w, nelems: nelems)
            a[w] = word | tail
            live &+= (word & ~tail).nonzeroBitCount
            reclaimed &+= freed.nonzeroBitCount
            remoteMerged &+= remote.nonzeroBitCount
        }
        if remoteMerged != 0 { remoteFreeCount.subtract(remoteMerged, ordering: .sequentiallyConsistent) }
        allocCount = live
        localFreeCount = 0
        freeIndex = 0
        refillAllocCache(0)
        if reclaimed != 0 { needzero = true }
        return reclaimed
    }

    /// Is object `i` live? Used by free to tell a double free or a never-allocated slot.
    /// Reads freeIndex, allocBits and freeBits without owning the span ("racy read"): a
    /// legitimate free is ordered after its malloc by the program, so it always sees the
    /// object as live; only a bad free can be misjudged, and the sweep catches it later.
    @inline(__always)
    func isLive(_ i: Int) -> Bool {
        let w = i >> 6
        let bit = UInt64(1) << UInt64(i & 63)
        let allocated = i < freeIndex || allocBits[w] & bit != 0
        if !allocated { return false }
        if freeBits[w] & bit != 0 { return false }
        return remoteWord(w).pointee.load(ordering: .relaxed) & bit == 0
    }

    /// Free objects a sweep would find now, without sweeping: never handed out since the last
    /// sweep, plus frees recorded since (local exactly; remote as counted, which can lag its
    /// bits for an instant). Owner.
    @inline(__always)
    var freeEstimate: Int {
        nelems &- allocCount &+ localFreeCount &+ Swift.max(0, remoteFreeCount.load(ordering: .relaxed))
    }

    /// Number of objects live right now, counting unmerged frees (slow; checks and stats).
    func liveObjectsSlow() -> Int {
        var n = 0
        for i in 0..<nelems where isLive(i) { n &+= 1 }
        return n
    }
}

/// A doubly linked list of spans (mcentral's partial and full sets).
/// Guarded by: the owning mcentral's lock.
struct SpanList {
    var first: UnsafeMutablePointer<MSpan>? = nil
    var last: UnsafeMutablePointer<MSpan>? = nil
    var count: Int = 0

    var isEmpty: Bool { first == nil }

    mutating func pushBack(_ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.next = nil
        s.pointee.prev = last
        if let l = last { l.pointee.next = s } else { first = s }
        last = s
        count &+= 1
    }

    mutating func remove(_ s: UnsafeMutablePointer<MSpan>) {
        if let p = s.pointee.prev { p.pointee.next = s.pointee.next } else { first = s.pointee.next }
        if let n = s.pointee.next { n.pointee.prev = s.pointee.prev } else { last = s.pointee.prev }
        s.pointee.next = nil
        s.pointee.prev = nil
        count &-= 1
    }

    mutating func popFront() -> UnsafeMutablePointer<MSpan>? {
        guard let s = first else { return nil }
        remove(s)
        return s
    }
}
