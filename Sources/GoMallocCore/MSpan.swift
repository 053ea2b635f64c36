// MSpan.swift — a run of pages cut into equal objects, with Go's allocation bitmaps.
//
// Role: the unit the heap hands out. A small-object span of span class c holds nelems
//   objects of elemSize bytes; a large span holds one object.
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
//       shifted so that bit 0 is object freeIndex, or a subset of it: 0 when freeIndex sits
//       on a word boundary the fast path reached without refilling, fewer bits while heap
//       profiling budgets the fast path (limitAllocCache). nextFreeIndex re-derives it.
//   I3b. allocBits bits at and above nelems are 1 ("allocated"), so the cache never offers a
//       slot past the end and nextFreeFast needs no bounds check.
//   I4. After a sweep: freeBits == 0, allocCount == popcount(allocBits), freeIndex == 0.
//   I5. A bit is never set in both freeBits and remoteBits (that is a double free, reported).
//   I6. location is cached(p) only while span is mcache[p].alloc[spanClass] or on
//       mcache[p].retired[spanClass]; partial/full
//       only while it sits on that list of its mcentral.
//   I7. A remote free is its bit: setting it (one fetch-or) is the whole record, with no
//       count beside it; whoever needs to know reads the bits (allObjectsFreedRemotely,
//       freeEstimate), so no count can lag its bits or land in a span reused since.
// Concurrency: fields are tagged. "Owner" = the P whose mcache holds the span (its holder
//   thread), or the mcentral lock while the span is on a central list. A field that another
//   thread reads while the owner may write it is an Atomic (or, for the bitmap words, read
//   and written only through AtomicWords), with the ordering said at the field; the owner's
//   own loads and stores of it are relaxed, which on x86-64 and AArch64 are plain moves.
//   Everything else is reached through `UnsafeMutablePointer<MSpan>` one stored field at a
//   time (the methods are on the pointer), never through a `mutating` method on the whole
//   struct, so concurrent accesses to different fields never overlap in Swift's sense.
//   Span metadata is type-stable (FixAlloc never returns it and does not zero it on reuse):
//   a thread holding a stale pointer (a remote freer after its fetch-or, see MCentral) reads
//   atomics of some span, never freed memory or torn values.
// Failure: none here. Bad frees found by a sweep are deferred (Report.swift) and reported
//   by the caller once it holds no lock and no P.
import CGoMallocSys
import Synchronization

/// What a span is used for. Legal transitions: free -> inUse -> free, free -> manual -> free.
/// `manual` (Go's mSpanManual): a stack span (Stack.swift), and the dummy empty span.
enum SpanState: UInt8 {
    case free = 0
    case inUse = 1
    case manual = 2
}

/// What a small span's objects are (MSpan.kindWord).
enum SpanKind {
    static let ordinary: UInt8 = 0
    /// 16-byte blocks of the tiny allocator, each with a sub-object record (Tiny.swift).
    static let tiny: UInt8 = 1
    /// Stacks (Stack.swift): a manual span of power-of-two stacks, every page mapped.
    static let stack: UInt8 = 2
}

/// Where a small span sits: 0, 1, 2, or the address of the P slot whose mcache holds it.
/// Legal transitions (all under the mcentral lock):
///   none -> cached(p)            (new span from the heap goes straight into a cache)
///   cached(p) -> partial | full  (uncached), partial | full -> cached(p), partial <-> full,
///   partial | full | cached -> none (span returned to the heap),
///   partial | full -> empty (kept in the reserve), empty -> cached(p) | none.
enum SpanLocation {
    static let none: UInt = 0
    static let partial: UInt = 1
    static let full: UInt = 2
    /// On the partial list with every object freed, kept in its mcentral's reserve of
    /// emptied spans (MCentral I3); remote frees no longer settle it (none can arrive).
    static let empty: UInt = 3
    @inline(__always) static func cached(_ slot: UnsafeMutablePointer<PSlot>) -> UInt { UInt(bitPattern: slot) }
}

/// A bitmap in span metadata whose words may be read by threads that do not own the span:
/// every access is a relaxed atomic load or store (the owner is the only writer).
struct AtomicWords {
    let base: UnsafeMutablePointer<UInt64>

    @inline(__always)
    func word(_ w: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutableRawPointer(base + w).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    subscript(w: Int) -> UInt64 {
        @inline(__always) get { word(w).pointee.load(ordering: .relaxed) }
        @inline(__always) nonmutating set { word(w).pointee.store(newValue, ordering: .relaxed) }
    }
}

struct MSpan: ~Copyable {
    // Span metadata blocks are 64-byte aligned (MHeap.spanAllocs). Line 0 holds what only
    // the owner's slow paths, malloc's scan and the lists use; line 1 everything a free
    // reads, local or remote, in 40 bytes, and the bitmaps right behind it: a span with one
    // word per bitmap (64 objects or fewer: every class of 128 bytes and up in one page) has
    // all three in line 1, so that any free of it — the owner's, another P's, one into a span
    // on a central list — reads two lines: the page map's and this one. With two words per
    // bitmap freeBits still ends line 1. A malloc's span is its P's current one, hot in any
    // case: its allocCache sits in line 0. LayoutTests pins the offsets.

    // MARK: - Line 0: colder fields (64 bytes)

    var npages: Int
    /// Central list links (mcentral lock), or the retired list's (owner).
    var next: UnsafeMutablePointer<MSpan>?
    var prev: UnsafeMutablePointer<MSpan>?
    /// Complement of allocBits starting at freeIndex; ctz finds the next free object. Owner.
    var allocCache: UInt64
    /// True when some object may hold old data (calloc must clear it). Owner.
    var needzero: Bool
    /// Sampled objects of this span in the heap profile's object table (Profile.swift I2);
    /// nonzero sends every free of the span to the slow path. Written under the profile lock;
    /// read by any free's slow path. Atomic, relaxed: the free of a sampled object is ordered
    /// after its sampling by the program's own hand-off of the pointer (it was written before
    /// that object was handed out); frees of other objects may read either value.
    let profiledObjectsWord: Atomic<UInt32>
    /// Fills line 0, so that line 1 starts at offset 64.
    private var padding: (UInt64, UInt64, UInt32)

    // MARK: - Line 1: everything any free reads (at most 40 bytes), then the bitmaps

    /// First byte of the span. Immutable while in use.
    var startAddr: UInt
    /// SpanLocation. Atomic: written under the mcentral lock, read by remote freers (seq_cst).
    let location: Atomic<UInt>
    /// Objects below freeIndex are allocated; the scan resumes here. Owner writes (release);
    /// other threads validating a free read it (acquire) before the bitmaps: a legitimate
    /// free is ordered after its malloc by the program, and any later index it may read was
    /// stored after the sweep that moved its object into allocBits, so it sees the object
    /// allocated either way (on x86-64 and AArch64 alike). At most nelems (1024).
    let freeIndexWord: Atomic<UInt32>
    /// Object size of a small span; 0 for a large one, whose size follows its pages (see
    /// `elemSize`). Immutable while in use.
    var elemSizeWord: UInt32
    /// Go 1.17's divMagic: index = (offset * divMul) >> 32; 0 for large spans. Immutable
    /// while in use.
    var divMul: UInt32
    /// Number of objects in the span (at most 1024). Immutable while in use.
    var nelemsWord: UInt16
    /// Objects allocated as of the last sweep plus those handed out since (at most 1024).
    /// Owner writes; remote freers read it (relaxed) after their sequentially consistent load
    /// of `location`, which is stored after every change that matters to them (MCentral).
    let allocCountWord: Atomic<UInt16>
    /// Objects the free fast path may index: nelems, or 0 for a span none of whose frees it
    /// may take (a tiny span, whose 16-byte blocks hold sub-objects: Tiny.swift; the dummy
    /// spans; a span holding sampled objects, Profile.swift I2), so that its index check
    /// sends every such free to the slow path at no cost. Atomic, relaxed (a plain load on
    /// the fast path): set at span set-up, and by heap profiling under its lock while other
    /// threads free into the span; ordered for the sampled object as profiledObjectsWord.
    let fastFreeLimitWord: Atomic<UInt16>
    /// SpanState. Atomic: written under the heap lock (release), read with acquire (every
    /// free's validation checks it); large spans CAS inUse -> free in free() to catch double
    /// frees without a lock.
    let state: Atomic<UInt8>
    /// Words per bitmap (1, 2, 4, 8, 16; 0 for a large span). Immutable while in use.
    var bitmapWordsWord: UInt8
    /// The index of the recent-free ring and free counter the owner's local frees go to:
    /// SpanClass.raw again (one byte load, no atomic), or while heap profiling is on and the
    /// span is a cached noscan one, its profiling ring (profileFreeRing). Written with
    /// spanClassWord at set-up, by cacheSpan, and by heap profiling's switch with the world
    /// stopped; read only by a thread that owns the span (remote freers, who may hold a
    /// stale pointer, read spanClassWord).
    var ownedSpanClassByte: UInt8
    /// SpanClass.raw. Written when the span is set up (heap lock); read by remote freers that
    /// may hold a stale pointer (relaxed, after an acquiring load of `location` or `state`).
    let spanClassWord: Atomic<UInt8>
    /// SpanKind: tiny for a tiny span (Tiny.swift), whose objects are 16-byte blocks holding
    /// sub-objects, freed only through the tiny path (fastFreeLimit is 0). Written when the span is set up (heap lock), immutable while in use; atomic
    /// (relaxed) because a remote freer holding a stale pointer reads it with spanClassWord
    /// (MCentral.settleLocked).
    let kindWord: Atomic<UInt8>

    // The bitmaps of a small span follow the struct in the same block, at bitmapOffset
    // (104: line 1's last 24 bytes): freeBits, allocBits, remoteBits, bitmapWords words each
    // (owner writes freeBits and allocBits, anyone reads them through AtomicWords; remoteBits
    // take fetch-or and exchange).

    /// A span with every field zero (the dummy spans; FixAlloc memory is the same bytes).
    init() {
        allocCache = 0; freeIndexWord = Atomic(0); startAddr = 0; location = Atomic(SpanLocation.none)
        allocCountWord = Atomic(0); nelemsWord = 0; fastFreeLimitWord = Atomic(0); elemSizeWord = 0; divMul = 0
        bitmapWordsWord = 0; spanClassWord = Atomic(0); needzero = false; ownedSpanClassByte = 0; kindWord = Atomic(0)
        npages = 0; next = nil; prev = nil; profiledObjectsWord = Atomic(0); padding = (0, 0, 0)
        state = Atomic(SpanState.free.rawValue)
    }

    /// Where the bitmaps start in a span's metadata block.
    static let bitmapOffset = (MemoryLayout<MSpan>.size + 7) & ~7

    /// Bytes of the metadata block of a span with `words` words per bitmap (0: a large
    /// span), a multiple of 64 so that blocks stay cache-line aligned.
    static func blockBytes(words: Int) -> Int {
        (bitmapOffset + 3 * 8 * words + 63) & ~63
    }

    /// Words needed for one bitmap of `nelems` bits, rounded up to a power of two
    /// (so that bitmaps come from five fixallocs: 1, 2, 4, 8, 16 words).
    static func bitmapWords(for nelems: Int) -> Int {
        let w = Swift.max(1, (nelems + 63) / 64)
        return w <= 1 ? 1 : 1 << (Int.bitWidth - (w - 1).leadingZeroBitCount)
    }

    /// The bits of allocBits word `w` at or above `nelems` (I3b).
    @inline(__always)
    static func tailMask(word w: Int, nelems: Int) -> UInt64 {
        let valid = nelems &- w &* 64
        if valid >= 64 { return 0 }
        if valid <= 0 { return ~0 }
        return ~((UInt64(1) << UInt64(valid)) &- 1)
    }
}

// MARK: - Methods, on the pointer (see Concurrency)

extension UnsafeMutablePointer where Pointee == MSpan {
    @inline(__always) var limit: UInt { pointee.startAddr &+ UInt(pointee.npages &* pageSize) }

    /// Objects in the span.
    @inline(__always) var nelems: Int { Int(pointee.nelemsWord) }
    /// Words per bitmap.
    @inline(__always) var bitmapWords: Int { Int(pointee.bitmapWordsWord) }
    /// Object size: the class size, or a large span's pages (which realloc may change).
    @inline(__always) var elemSize: Int {
        pointee.elemSizeWord != 0 ? Int(pointee.elemSizeWord) : pointee.npages &* pageSize
    }

    /// The first bitmap word, right after the struct. freeBits come first: the free fast
    /// path finds its word at a constant offset, without loading bitmapWords.
    @inline(__always) private var bits: UnsafeMutablePointer<UInt64> {
        (UnsafeMutableRawPointer(self) + MSpan.bitmapOffset).assumingMemoryBound(to: UInt64.self)
    }
    @inline(__always) var freeBits: AtomicWords { AtomicWords(base: bits) }
    @inline(__always) var allocBits: AtomicWords { AtomicWords(base: bits + bitmapWords) }
    @inline(__always) var remoteBits: AtomicWords { AtomicWords(base: bits + 2 &* bitmapWords) }

    @inline(__always)
    func remoteWord(_ w: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { remoteBits.word(w) }

    /// freeIndex as its owner reads it (relaxed) and stores it (release; see
    /// MSpan.freeIndexWord). Other threads use `publishedFreeIndex`.
    var freeIndex: Int {
        @inline(__always) get { Int(pointee.freeIndexWord.load(ordering: .relaxed)) }
        @inline(__always) nonmutating set { pointee.freeIndexWord.store(UInt32(truncatingIfNeeded: newValue), ordering: .releasing) }
    }

    /// freeIndex for a thread that does not own the span (acquire): what it then reads of
    /// the bitmaps is at least as new as the index.
    @inline(__always)
    var publishedFreeIndex: Int { Int(pointee.freeIndexWord.load(ordering: .acquiring)) }

    /// allocCount (relaxed; see MSpan.allocCountWord).
    var allocCount: Int {
        @inline(__always) get { Int(pointee.allocCountWord.load(ordering: .relaxed)) }
        @inline(__always) nonmutating set { pointee.allocCountWord.store(UInt16(truncatingIfNeeded: newValue), ordering: .relaxed) }
    }

    var spanClass: SpanClass {
        @inline(__always) get { SpanClass(raw: pointee.spanClassWord.load(ordering: .relaxed)) }
        @inline(__always) nonmutating set {
            pointee.spanClassWord.store(newValue.raw, ordering: .relaxed)
            pointee.ownedSpanClassByte = newValue.raw
        }
    }

    /// MSpan.fastFreeLimitWord (relaxed).
    var fastFreeLimit: UInt16 {
        @inline(__always) get { pointee.fastFreeLimitWord.load(ordering: .relaxed) }
        @inline(__always) nonmutating set { pointee.fastFreeLimitWord.store(newValue, ordering: .relaxed) }
    }

    /// MSpan.profiledObjectsWord (relaxed).
    var profiledObjects: UInt32 {
        @inline(__always) get { pointee.profiledObjectsWord.load(ordering: .relaxed) }
        @inline(__always) nonmutating set { pointee.profiledObjectsWord.store(newValue, ordering: .relaxed) }
    }

    /// The ring and counter index of the owner's local frees (see MSpan.ownedSpanClassByte).
    @inline(__always) var ownedSpanClassIndex: Int { Int(pointee.ownedSpanClassByte) }

    /// Point the owner's local frees at the ring for the profiling state (cacheSpan, and the
    /// switch with the world stopped). Owner.
    @inline(__always)
    func setFreeRing(profiling: Bool) {
        let spc = spanClass
        pointee.ownedSpanClassByte = profiling ? profileFreeRing(spc) : spc.raw
    }

    /// A tiny span (MSpan.kindByte)?
    @inline(__always) var isTiny: Bool { pointee.kindWord.load(ordering: .relaxed) == SpanKind.tiny }

    /// SpanKind (MSpan.kindWord).
    var kind: UInt8 {
        @inline(__always) get { pointee.kindWord.load(ordering: .relaxed) }
        @inline(__always) nonmutating set { pointee.kindWord.store(newValue, ordering: .relaxed) }
    }

    // MARK: - Object index by multiplication

    /// Index of the object containing `addr` (no division: Go's divMagic).
    @inline(__always)
    func objIndex(_ addr: UInt) -> Int {
        Int(truncatingIfNeeded: (UInt64(addr &- pointee.startAddr) &* UInt64(pointee.divMul)) >> 32)
    }

    // MARK: - Fast path

    /// Go's nextFreeFast: the next free object from the allocCache window, or 0 on a miss.
    /// Unlike Go's it needs no `result < nelems` test (I3b) and may stop on a word boundary
    /// with an empty cache (I3): nextFreeIndex refills it there. Owner.
    @inline(__always)
    func nextFreeFast() -> UInt {
        let cache = pointee.allocCache
        let theBit = cache.trailingZeroBitCount
        if theBit < 64 {
            let result = freeIndex &+ theBit
            pointee.allocCache = (cache &>> UInt64(theBit)) &>> 1
            freeIndex = result &+ 1
            allocCount = allocCount &+ 1
            return pointee.startAddr &+ UInt(bitPattern: result &* Int(pointee.elemSizeWord))
        }
        return 0
    }

    // MARK: - Slow path (partner of nextFreeFast)

    /// Load allocCache with the complement of the allocBits word holding object `index`
    /// (a multiple of 64). Go's refillAllocCache. Owner.
    @inline(__always)
    func refillAllocCache(_ index: Int) {
        pointee.allocCache = ~allocBits[index >> 6]
    }

    /// Heap profiling's budget: let the fast path take at most `k` more objects from the
    /// allocCache window (its lowest k bits are kept; I3 allows a subset). Owner.
    func limitAllocCache(_ k: Int) {
        var c = pointee.allocCache
        if k >= c.nonzeroBitCount { return }
        var kept: UInt64 = 0
        var n = 0
        while n < k {
            let low = c & (0 &- c)
            kept |= low
            c ^= low
            n &+= 1
        }
        pointee.allocCache = kept
    }

    /// Go's nextFreeIndex: the index of the next free object at or after freeIndex, or
    /// nelems. Owner.
    @inline(never)
    func nextFreeIndex() -> Int {
        var sfreeindex = freeIndex
        let snelems = nelems
        if sfreeindex >= snelems { return snelems }
        // The fast path can leave freeIndex on a word boundary with the cache used up, and
        // heap profiling can leave the cache a subset (I3): re-derive it from allocBits.
        pointee.allocCache = ~allocBits[sfreeindex >> 6] &>> UInt64(sfreeindex & 63)
        var aCache = pointee.allocCache
        var bitIndex = aCache.trailingZeroBitCount
        while bitIndex == 64 {
            sfreeindex = (sfreeindex &+ 64) & ~63
            if sfreeindex >= snelems {
                freeIndex = snelems
                return snelems
            }
            refillAllocCache(sfreeindex)
            aCache = pointee.allocCache
            bitIndex = aCache.trailingZeroBitCount
        }
        let result = sfreeindex &+ bitIndex
        if result >= snelems {
            freeIndex = snelems
            return snelems
        }
        pointee.allocCache = (aCache &>> UInt64(bitIndex)) &>> 1
        sfreeindex = result &+ 1
        if sfreeindex & 63 == 0 && sfreeindex != snelems {
            refillAllocCache(sfreeindex)
        }
        freeIndex = sfreeindex
        return result
    }

    /// The sweep: merge freeBits and remoteBits into allocBits, restart the scan at 0.
    /// Returns the number of objects reclaimed. Caller is the owner (the caching P, or the
    /// mcentral lock holder). A bit freed both locally and remotely is a double free, a free
    /// bit on a slot never handed out an invalid free: the first is deferred (Report.swift)
    /// for the caller to report once it has let go of its P and locks.
    func sweep() -> Int {
        let nw = bitmapWords
        let nelems = self.nelems
        let fi = freeIndex
        let a = allocBits, f = freeBits
        var live = 0
        var reclaimed = 0
        for w in 0..<nw {
            let lo = w &* 64
            var word = a[w]
            // Everything below freeIndex was handed out.
            if fi >= lo &+ 64 {
                word = ~0
            } else if fi > lo {
                word |= (UInt64(1) << UInt64(fi &- lo)) &- 1
            }
            let local = f[w]
            if local != 0 { f[w] = 0 }
            let remote = remoteWord(w).pointee.load(ordering: .relaxed) == 0
                ? 0 : remoteWord(w).pointee.exchange(0, ordering: .acquiring)
            if local & remote != 0 {
                let i = lo &+ (local & remote).trailingZeroBitCount
                deferBadPointer(.doubleFree, address: pointee.startAddr &+ UInt(bitPattern: i &* elemSize))
            }
            let freed = local | remote
            if freed & ~word != 0 {
                let i = lo &+ (freed & ~word).trailingZeroBitCount
                deferBadPointer(.invalidPointer, address: pointee.startAddr &+ UInt(bitPattern: i &* elemSize))
            }
            word &= ~freed
            // Bits past nelems stay set (I3b) and are not objects.
            let tail = MSpan.tailMask(word: w, nelems: nelems)
            a[w] = word | tail
            live &+= (word & ~tail).nonzeroBitCount
            reclaimed &+= freed.nonzeroBitCount
        }
        allocCount = live
        freeIndex = 0
        refillAllocCache(0)
        if reclaimed != 0 { pointee.needzero = true }
        return reclaimed
    }

    /// Is object `i` live? Used by free to tell a double free or a never-allocated slot.
    /// Reads freeIndex (acquire) and then the bitmaps without owning the span: a legitimate
    /// free is ordered after its malloc by the program, so it always sees the object as live
    /// (see MSpan.freeIndexWord); only a bad free can be misjudged, and the sweep catches it.
    @inline(__always)
    func isLive(_ i: Int) -> Bool {
        let w = i >> 6
        let bit = UInt64(1) << UInt64(i & 63)
        let allocated = i < publishedFreeIndex || allocBits[w] & bit != 0
        if !allocated { return false }
        if freeBits[w] & bit != 0 { return false }
        return remoteBits[w] & bit == 0
    }

    /// Free objects a sweep would find now, without sweeping: never handed out since the last
    /// sweep, plus frees recorded since in freeBits or remoteBits (counted from the bits: no
    /// free keeps a count; a remote free racing this read may be missed). Owner.
    var freeEstimate: Int {
        var freed = 0
        for w in 0..<bitmapWords {
            freed &+= (freeBits[w] | remoteWord(w).pointee.load(ordering: .relaxed)).nonzeroBitCount
        }
        return nelems &- allocCount &+ freed
    }

    /// True when every object of a swept span on a central list has been freed remotely
    /// since (allocBits within nelems all covered by remoteBits): the span can go to the
    /// heap. On a central list nobody allocates from the span or frees into its freeBits, so
    /// allocBits is exact and stable; a remote freer reads it after its sequentially
    /// consistent load of `location` (MCentral's handshake). The scan stops at the first word
    /// with a live object, so a span far from empty costs one word — no population count,
    /// which baseline x86-64 has no instruction for.
    @inline(__always)
    var allObjectsFreedRemotely: Bool {
        let n = nelems
        for w in 0..<bitmapWords {
            let live = allocBits[w] & ~remoteWord(w).pointee.load(ordering: .sequentiallyConsistent)
            if live & ~MSpan.tailMask(word: w, nelems: n) != 0 { return false }
        }
        return true
    }

    /// True when some remote free is not yet merged. Relaxed.
    @inline(__always)
    var hasPendingRemoteFrees: Bool {
        for w in 0..<bitmapWords where remoteWord(w).pointee.load(ordering: .relaxed) != 0 { return true }
        return false
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

    mutating func pushFront(_ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.prev = nil
        s.pointee.next = first
        if let f = first { f.pointee.prev = s } else { last = s }
        first = s
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

/// Heap profiling's ring (and free counter) for local frees of a cached noscan span of class
/// `spc`: numSpanClasses + its size class (MCache.ringCount); scan spans keep their own (their
/// requests all take the slow path while profiling).
@inline(__always)
func profileFreeRing(_ spc: SpanClass) -> UInt8 {
    spc.noscan && spc.sizeClass != 0 ? UInt8(numSpanClasses &+ spc.sizeClass) : spc.raw
}
