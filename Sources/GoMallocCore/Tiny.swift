// Tiny.swift — the tiny allocator: requests of 1-4 bytes packed into 16-byte blocks, freed exactly.
//
// Role: Go packs noscan objects under 16 bytes into one 16-byte block per P (mcache.tiny,
//   tinyoffset) and lets the collector free the block once no sub-object is reachable. Here
//   free is explicit, so each block carries a record of where its sub-objects start and which
//   are live: free(p) of a sub-object clears its mark, and the block goes back to its span
//   when its last sub-object is freed and no P is still filling it. The C promise (16-byte
//   alignment above 8 bytes, the largest power of two not above the size for 1-8 bytes) rules
//   out packing anything over 8 bytes; of 1-8, only 1-4 pay: a packed object costs its
//   rounded size plus a quarter of itself in record (4 bytes per 16-byte block), so an 8-byte
//   object would cost 10 bytes packed against 8 in the 8-byte class (DESIGN.md has the
//   figures). A request of n bytes takes r = 1, 2, 4, 4 bytes (n = 1...4) at an offset that
//   is a multiple of r, at or after the block's fill offset; r is also its usable size.
//   Only noscan requests are packed, as in Go: every C request (C has no types; Go's mallocgc
//   treats an untyped allocation as noscan) and Swift requests made with
//   containsPointers: false. The aligned family never packs. Packing is off by default
//   (GOMALLOC_TINY=1 turns it on; MHeap.tinyLimit is 0 otherwise): it costs up to a fifth of
//   the time of programs making many 4-byte requests and saves memory only where many such
//   objects live together (DESIGN.md, "The tiny allocator").
//   Blocks come from tiny spans: spans of size class 2 (16 bytes), noscan, kind tiny, with
//   their own mcentral (MHeap.tinyCentral) and one record word per block after the bitmaps
//   in the span's metadata. The free fast path leaves on a tiny span (MSpan.kindWord); every
//   tiny free is this file's.
// Go counterpart: malloc.go (mallocgc's tiny branch, maxTinySize, mcache.tiny/tinyoffset).
//
// The record of a block (one UInt32, TinyRecord) describes its 16 byte positions:
//   position 0 (bits 0-1): bit 0 = the sub-object at offset 0 is live; bit 1 = OPEN, the
//     block is some mcache's `tiny` (its P may still place sub-objects in it). Position 0
//     is a start in every block ever opened, so it needs no start mark.
//   position k = 1...15 (bits 2k, 2k+1): 00 nothing starts here (inside a sub-object, or
//     past the fill offset), 01 a live sub-object starts here, 10 a freed one did,
//     11 a boundary: alignment padding or the unfilled tail starts here (no object).
//   A sub-object's extent runs to the next position that is not 00, or to 16. Placing one
//   at a fill-offset boundary turns 11 into 01 (else 00 into 01) and marks 11 where it ends.
// Invariants:
//   I1. A block of a tiny span is allocated in the span's bitmaps iff its record has a live
//       sub-object or OPEN; OPEN is set on exactly the blocks that are some mcache's `tiny`.
//   I2. A record is only changed by XOR of bits that the changer owns: the P holding the
//       block open owns the bits at and past its fill offset and OPEN; the freer of a live
//       sub-object owns that sub-object's two bits (01 -> 10; position 0: bit 0). So the
//       changes commute, and exactly one of them — a free or the close — takes the record to
//       "no live, not OPEN": that one frees the block, once.
//   I3. A freed block keeps its record until it is opened again (so a second free of its
//       last sub-object is named a double free); a block never opened since its span was
//       made has record 0 in positions 1-15.
//   I4. Sum over Ps of TinyCounter allocs - frees == live sub-objects in all records;
//       blockAllocs - blockFrees == allocated blocks of all tiny spans.
// Concurrency: the owner places with a relaxed fetch-xor (a freer of the new sub-object got
//   its pointer from the program, after the placement); a freer validates and flips its two
//   bits with a compare-and-swap (acquire-release), the close is a fetch-xor
//   (acquire-release). The acquire-release read-modify-writes form one release sequence, so
//   whoever frees the block has seen every other sub-object freed before it. A free holds a
//   P throughout (Free.swift I2), so a stopped world never sees a record and its block
//   disagree. The block itself is freed by the ordinary span protocol: a local free bit when
//   the freer's P caches the span, else a remote free (MCentral's handshake, with the tiny
//   mcentral).
// Failure: malloc returns nil (ENOMEM) when no tiny span can be had; a bad free is reported
//   with the same one-line messages as any other.
import CGoMallocSys
import Synchronization

/// Bytes of a tiny block (Go's maxTinySize).
let tinyBlockSize = 16
/// The largest request packed (see Role).
let maxTinySize = 4

/// The rounded size and alignment of a packed request of `n` (0...4) bytes (0 is served as 1).
@inline(__always)
func tinyRoundedSize(_ n: Int) -> Int { n <= 2 ? Swift.max(n, 1) : 4 }

/// A block's record (see the file header).
enum TinyRecord {
    /// Position 0's live bit.
    static let live0: UInt32 = 1
    static let open: UInt32 = 2
    /// Two-bit states of positions 1...15.
    static let liveStart: UInt32 = 1
    static let freedStart: UInt32 = 2
    static let boundary: UInt32 = 3

    @inline(__always)
    static func state(_ v: UInt32, _ k: Int) -> UInt32 { (v &>> UInt32(2 &* k)) & 3 }

    /// A live sub-object anywhere in the block?
    @inline(__always)
    static func anyLive(_ v: UInt32) -> Bool {
        v & live0 != 0 || (v & 0x5555_5554 & ~(v &>> 1)) != 0
    }

    /// Number of live sub-objects.
    static func liveCount(_ v: UInt32) -> Int {
        Int((v & live0).nonzeroBitCount + (v & 0x5555_5554 & ~(v &>> 1)).nonzeroBitCount)
    }

    /// Nothing live and not open: the block belongs to its span again.
    @inline(__always)
    static func isDead(_ v: UInt32) -> Bool { v & open == 0 && !anyLive(v) }

    /// Never opened since its span was made (I3).
    @inline(__always)
    static func neverUsed(_ v: UInt32) -> Bool { v & ~3 == 0 }

    /// What a free at `off` would be: nil for the start of a live sub-object.
    @inline(__always)
    static func problem(_ v: UInt32, _ off: Int) -> BadPointerProblem? {
        if off == 0 {
            if neverUsed(v) { return .invalidPointer }
            return v & live0 != 0 ? nil : .doubleFree
        }
        switch state(v, off) {
        case liveStart: return nil
        case freedStart: return .doubleFree
        default: return .invalidPointer
        }
    }

    /// The bits a free at `off` flips.
    @inline(__always)
    static func freeMask(_ off: Int) -> UInt32 { off == 0 ? live0 : 3 &<< UInt32(2 &* off) }

    /// The extent of the sub-object starting at `off` (a start).
    static func extent(_ v: UInt32, _ off: Int) -> Int {
        var k = off &+ 1
        while k < tinyBlockSize && state(v, k) == 0 { k &+= 1 }
        return k &- off
    }

    /// The record of a block just opened with a sub-object of `r` bytes at offset 0.
    @inline(__always)
    static func opened(_ r: Int) -> UInt32 { live0 | open | (boundary &<< UInt32(2 &* r)) }

    /// The bits the owner flips to place `r` bytes at `off`, its fill offset being `fill`.
    @inline(__always)
    static func placeMask(off: Int, r: Int, fill: Int) -> UInt32 {
        // At the fill offset sits the boundary (11 -> 01); past it, padding left 00 (-> 01).
        var m: UInt32 = (off == fill ? 2 : 1) &<< UInt32(2 &* off)
        if off &+ r < tinyBlockSize { m |= boundary &<< UInt32(2 &* (off &+ r)) }
        return m
    }
}

/// Bytes of a tiny span's metadata block: the ordinary block of a 16-byte-class span, then
/// one record per block (MHeap.spanAllocs' last FixAlloc).
let tinySpanBitmapWords = MSpan.bitmapWords(for: pageSize / tinyBlockSize)
let tinySpanMetadataBytes = MSpan.blockBytes(words: tinySpanBitmapWords) + (pageSize / tinyBlockSize) * 4

extension UnsafeMutablePointer where Pointee == MSpan {
    /// Block `i`'s record (a tiny span's).
    @inline(__always)
    func tinyRecord(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (UnsafeMutableRawPointer(self) + MSpan.blockBytes(words: tinySpanBitmapWords))
            .assumingMemoryBound(to: Atomic<UInt32>.self) + i
    }
}

// MARK: - Allocation (Go's mallocgc tiny branch)

/// Turn packing on or off at run time (tests, while no other thread is in the allocator:
/// MHeap.tinyLimitValue is a plain field; GOMALLOC_TINY sets it at start-up). Objects
/// already packed stay valid: frees find them by their span's kind.
package func setTinyPacking(_ on: Bool) {
    guard let h = heap() else { return }
    h.pointee.tinyLimitValue = on ? UInt(maxTinySize + 1) : 0
}

/// A packed object of `size` (0...maxTinySize) bytes, zeroed if `zero`. nil when out of memory.
@inline(never)
func mallocTiny(_ h: UnsafeMutablePointer<MHeap>, size: Int, zero: Bool) -> UnsafeMutableRawPointer? {
    let slot = h.acquireP()
    guard let cache = mcacheOf(h, slot) else {
        h.releaseP(slot)
        gm_sys_set_errno(ENOMEM)
        return nil
    }
    let r = tinyRoundedSize(size)
    let t = cache.pointee.tiny
    let fill = cache.pointee.tinyOffset
    let off = (fill &+ r &- 1) & ~(r &- 1)
    var addr: UInt = 0
    if t != 0 && off &+ r <= tinyBlockSize {
        // Room in the open block: OPEN keeps it ours, so one relaxed fetch-xor places it.
        let rec = cache.openTinyRecord
        rec.pointee.bitwiseXor(TinyRecord.placeMask(off: off, r: r, fill: fill), ordering: .relaxed)
        cache.pointee.tinyOffset = off &+ r
        addr = t &+ UInt(off)
    } else {
        cache.closeTinyBlock(heap: h)
        let b = cache.nextTinyBlock(heap: h)
        if b != 0 {
            let s = h.spanOf(b).unsafelyUnwrapped
            s.tinyRecord(s.objIndex(b)).pointee.store(TinyRecord.opened(r), ordering: .relaxed)
            cache.pointee.tiny = b
            cache.pointee.tinyOffset = r
            slot.countTiny(.blockAllocs)
            addr = b
        }
    }
    if addr != 0 { slot.countTiny(.allocs) }
    h.releaseP(slot)
    // A refill may have swept a span and found a bad free.
    reportDeferred()
    guard let p = UnsafeMutableRawPointer(bitPattern: addr) else {
        gm_sys_set_errno(ENOMEM)
        return nil
    }
    if zero { gm_sys_memset(p, 0, r) }
    return p
}

extension UnsafeMutablePointer where Pointee == MCache {
    /// The record of the open block (tiny != 0).
    @inline(__always)
    var openTinyRecord: UnsafeMutablePointer<Atomic<UInt32>> {
        // The open block's span is still in use: the block is allocated (I1).
        let s = pointee.tinySpanOfOpen
        return s.tinyRecord(s.objIndex(pointee.tiny))
    }

    /// Close the open block, if any (clear OPEN); if no sub-object of it is live, give it
    /// back to its span. Caller holds the P; a problem (only a heap corrupted elsewhere has
    /// one) is deferred for the caller to report once it lets go (Report.swift).
    func closeTinyBlock(heap h: UnsafeMutablePointer<MHeap>) {
        let t = pointee.tiny
        if t == 0 { return }
        let s = pointee.tinySpanOfOpen
        let i = s.objIndex(t)
        pointee.tiny = 0
        pointee.tinyOffset = tinyBlockSize
        let old = s.tinyRecord(i).pointee.bitwiseXor(TinyRecord.open, ordering: .acquiringAndReleasing).oldValue
        if TinyRecord.isDead(old ^ TinyRecord.open), let problem = freeTinyBlock(h, s, index: i, slot: pointee.p) {
            deferBadPointer(problem, address: t)
        }
    }

    /// A fresh block from this P's tiny span, refilling it from the tiny mcentral; 0 when the
    /// heap is exhausted. Records the block's span in tinySpanOfOpen. Caller holds the P and
    /// has closed the open block.
    func nextTinyBlock(heap h: UnsafeMutablePointer<MHeap>) -> UInt {
        var s = pointee.tinySpan
        var v = s.nextFreeFast()
        if v == 0 { v = s.nextFreeSlow() }
        if v == 0 {
            let empty = h.pointee.emptySpan
            if s != empty {
                pointee.tinySpan = empty
                if MCache.worthReusing(s) && s.sweep() > 0 && s.allocCount < s.nelems {
                    pointee.tinySpan = s
                } else {
                    h.tinyCentral.uncacheSpan(s, heap: h)
                }
            }
            if pointee.tinySpan == empty {
                guard let t = h.tinyCentral.cacheSpan(heap: h, p: pointee.p) else { return 0 }
                pointee.tinySpan = t
            }
            s = pointee.tinySpan
            v = s.nextFreeFast()
            if v == 0 { v = s.nextFreeSlow() }
            if v == 0 { throwFatal("tiny refill returned a full span") }
        }
        pointee.tinySpanOfOpen = s
        return v
    }
}

extension UnsafeMutablePointer where Pointee == MSpan {
    /// The next free object after a nextFreeFast miss (the bitmap scan), or 0. Owner.
    func nextFreeSlow() -> UInt {
        let idx = nextFreeIndex()
        if idx == nelems { return 0 }
        allocCount = allocCount &+ 1
        return pointee.startAddr &+ UInt(bitPattern: idx &* elemSize)
    }
}

// MARK: - Free

/// Give block `i` of tiny span `s` back to the span (I2: the caller's change made its record
/// dead). Caller holds P `slot`. Local when `slot` caches the span, else a remote free.
func freeTinyBlock(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, index i: Int,
                   slot: UnsafeMutablePointer<PSlot>) -> BadPointerProblem? {
    slot.countTiny(.blockFrees)
    if s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(slot) {
        let w = i &>> 6
        let bit = UInt64(1) &<< UInt64(i & 63)
        if !s.isLive(i) { return .doubleFree }
        // No recent-free entry: the rings serve ordinary objects of the class.
        s.freeBits[w] = s.freeBits[w] | bit
        return nil
    }
    return freeRemote(h, s, spanClass: s.spanClass, index: i)
}

/// free() of an address inside tiny span `s`, block `i`. Holds nothing on entry.
@inline(never)
func freeTiny(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, index i: Int,
              addr: UInt, function: StaticString) {
    // The span came from the page map (findObject checked it already; this keeps freeTiny
    // safe for any caller): a tiny span maps its page only while in use, so only a free
    // racing the span's own release (itself a bad free) could see another state.
    if s.pointee.state.load(ordering: .acquiring) != SpanState.inUse.rawValue || i >= s.nelems {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    let off = Int(addr &- (s.pointee.startAddr &+ UInt(i &* tinyBlockSize)))
    let rec = s.tinyRecord(i)
    let slot = h.acquireP()
    var v = rec.pointee.load(ordering: .acquiring)
    var problem: BadPointerProblem? = nil
    while true {
        problem = TinyRecord.problem(v, off)
        if problem != nil { break }
        let new = v ^ TinyRecord.freeMask(off)
        let (done, current) = rec.pointee.compareExchange(expected: v, desired: new,
                                                          successOrdering: .acquiringAndReleasing,
                                                          failureOrdering: .acquiring)
        if done {
            slot.countTiny(.frees)
            if TinyRecord.isDead(new) { problem = freeTinyBlock(h, s, index: i, slot: slot) }
            break
        }
        v = current
    }
    h.releaseP(slot)
    if let problem { reportBadPointer(function: function, problem: problem.text, address: addr) }
}

/// The usable size of the packed object at `addr` (block `i` of tiny span `s`): its rounded
/// size. `requireLive`: a freed one is reported as an invalid pointer (realloc); otherwise
/// only an address that starts no sub-object is.
func tinyUsableSize(_ s: UnsafeMutablePointer<MSpan>, index i: Int, addr: UInt,
                    requireLive: Bool, function: StaticString) -> Int {
    let off = Int(addr &- (s.pointee.startAddr &+ UInt(i &* tinyBlockSize)))
    let v = s.tinyRecord(i).pointee.load(ordering: .acquiring)
    if let problem = TinyRecord.problem(v, off), requireLive || problem == .invalidPointer {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    return TinyRecord.extent(v, off)
}
