// Profile.swift — heap profiling: Go's MemProfileRate sampling, recorded in our own metadata.
//
// Role: with a sampling rate R > 0 (GOMALLOC_PROFILE_RATE; 512 KiB, Go's MemProfileRate,
//   when GOMALLOC_PROFILE asks for a profile), each P counts the bytes it allocates down from
//   a threshold drawn from an exponential distribution of mean R (MCache.nextSample, Go's
//   mcache.nextSample); the allocation that crosses it is sampled: its call stack (frame
//   pointers, gm_sys_backtrace_fp; with GOMALLOC_PROFILE_UNWIND=1 the .eh_frame unwinder,
//   gm_sys_backtrace_unwind, primed when the heap starts) and size are counted in a bucket (Go's mprof bucket: one
//   per stack and size), and the object is remembered in a table keyed by its address, its
//   span marked (profiledObjects, and fastFreeLimit 0 so that every free of the span takes
//   the slow path, which looks the object up); its free is counted in the same bucket. The
//   buckets thus hold what was allocated and what is still in use, as raw sample counts; the
//   reader scales them back to estimates as pprof does (1 / (1 - e^(-size/R)) per sample).
//   How small allocations reach the countdown without costing the fast path anything while
//   profiling is off, and little while it is on: each P keeps one countdown per span class
//   (MCache.profileLeft; a Poisson process of bytes split by class is one per class with the
//   same rate, so the samples are distributed as Go's) and the fast path is given a budget.
//   Turning sampling on (profileSetRate, the world stopped) points MHeap.fastClassTable at a
//   table in which noscan requests (every C request) keep their classes and scan requests map
//   to class 0 (always a miss: they take the slow path); sends the local frees of every cached
//   noscan span to a second set of recent-free rings the fast path never pops
//   (MSpan.ownedSpanClassByte, profileFreeRing; their objects come back through the sweep);
//   and empties those spans' allocCache windows. The fast path then allocates a noscan class
//   only from its span's window, which the slow path — reached on a miss — cuts after every
//   allocation of the class to the objects that precede the next sampled one
//   (profileCountClass, MSpan.limitAllocCache; allocCache is derivable from allocBits, so the
//   bits cut need no keeping). At each such visit the fast path's allocations since the last
//   one (the P's malloc count, MCache.profileSeen) are charged, and the allocation that reaches
//   the threshold is the sampled one. Large objects count down the P's own threshold
//   (MCache.nextSample), which is a Poisson process of its own. With profiling off the fast
//   path is the same instructions but one (150 per malloc+free pair, callgrind, 149 before:
//   fastFreeLimit is a relaxed atomic); on, 163-172.
//   The dump (writeProfile; at exit, on SIGUSR2, or gomalloc_profile_dump), version 1:
//     gomalloc-profile 1 rate <R> pid <pid>
//     sample <allocs> <alloc bytes> <frees> <free bytes> <object bytes> 0x<pc> ...
//                                 (one per bucket; raw sample counts; the innermost pc
//                                 first, the allocator's own frames included)
//     dropped <samples> <objects> (samples lost because the bucket table was full; sampled
//                                 objects not remembered because the object table was full:
//                                 their frees go uncounted)
//     maps                        (then /proc/self/maps, verbatim)
//     end
// Go counterpart: mprof.go (mProf_Malloc, mProf_Free, buckets), malloc.go (profilealloc,
//   nextSample, fastexprand).
// Invariants:
//   I1. Nothing here allocates: the state is one sparse mapping made when profiling is first
//       turned on; stacks are walked into a stack buffer; the dump is written through
//       HeapMap's DumpWriter.
//   I2. An object is in the object table only while live and sampled; every span holding
//       such objects has profiledObjects = their number and fastFreeLimit 0 (its frees take
//       the slow path, which removes the object before recording the free).
//   I3. Buckets are only appended: bucket i < bucketCount is fully written before
//       bucketCount is published (release), so a reader that holds nothing (the dump, from a
//       signal handler too) sees complete buckets; its counters are atomics.
//   I4. For every bucket, frees <= allocs and free bytes <= alloc bytes (a free is counted
//       only for an object the table held).
// Concurrency: the profile lock (rank profile) guards the object table, the bucket index and
//   new buckets; it is taken only while holding a P, so a stopped world (fork) never copies
//   it held. Counters are atomics, the countdown is the P's (Owner: P).
// Failure: no memory for the state leaves profiling off; a full table drops samples (counted).
import CGoMallocSys
import Synchronization

/// Frames kept per sample (Go's maxStack).
let profileMaxDepth = 32
/// Buckets (distinct stack and size pairs): 32768 × 320 bytes, sparse.
let profileBucketCapacity = 1 << 15
/// Slots of the bucket index (open addressing, twice the buckets).
let profileIndexCapacity = 1 << 16
/// Slots for live sampled objects: 262144 of 16 bytes, sparse, at most half used (131072
/// objects: about 64 GiB in use at the default rate).
let profileObjectCapacity = 1 << 18
/// Words of a bucket: hash, size, depth, allocs, alloc bytes, frees, free bytes, spare, pcs.
let profileBucketWords = 8 + profileMaxDepth
/// The default rate (Go's MemProfileRate).
let profileDefaultRate = 512 * 1024

/// The state's header, at the start of its mapping.
struct ProfileHeader: ~Copyable {
    /// Guards the object table, the bucket index and the creation of buckets.
    let lock: RuntimeLock
    /// Buckets in use. Atomic: release after the bucket is written (I3).
    let bucketCount: Atomic<Int>
    /// Samples lost to a full bucket table. Atomic: relaxed (a count).
    let droppedSamples: Atomic<Int>
    /// Sampled objects not remembered (full object table). Atomic: relaxed.
    let droppedObjects: Atomic<Int>
    /// Live sampled objects. Guarded by: lock (written only under it; an Atomic, relaxed, so
    /// that no write is a mutating access to the header other threads read the lock through).
    let objects: Atomic<Int>
    /// Seed of the per-P generators (GOMALLOC_PROFILE_SEED, or the time and pid). Immutable.
    let seed: UInt64
    /// Generators seeded so far: the n-th P to draw a threshold gets mix64(seed + n), so that
    /// a program whose allocations all run on one P repeats its samples. Atomic: relaxed.
    let seeded: Atomic<UInt64>
}

// Layout of the mapping: the header, the class table the fast path reads while profiling
// (fastClassTableBytes: noscan classes as they are, scan classes 0), the bucket index
// (UInt32: bucket + 1), the object table (address, bucket), the buckets.
private let profileTableOffset = 4096
private let profileIndexOffset = profileTableOffset + ((fastClassTableBytes + 4095) & ~4095)
private let profileObjectsOffset = profileIndexOffset + profileIndexCapacity * 4
private let profileBucketsOffset = profileObjectsOffset + profileObjectCapacity * 16
private let profileStateBytes = profileBucketsOffset + profileBucketCapacity * profileBucketWords * 8

/// The state's mapping, 0 until profiling is first turned on. Atomic: release once set up.
private let profileStateWord = Atomic<UInt>(0)
/// The sampling rate in bytes; 0 = off. Atomic: relaxed (read on slow paths only).
private let profileRateWord = Atomic<Int>(0)
/// The process that turned profiling on from the environment (forked children write their
/// own dump only when the path has `%p`).
private let profilePID = Atomic<Int>(0)
private let profileExitRegistered = Atomic<Bool>(false)
/// Whether samples walk the stack with the unwinder (GOMALLOC_PROFILE_UNWIND=1, primed).
/// Atomic: relaxed.
private let profileUnwinderWord = Atomic<Bool>(false)

/// With GOMALLOC_PROFILE_UNWIND=1, load and try the unwinder (it allocates the first time),
/// then let samples use it. Only where allocating is allowed: no allocator lock held.
func profilePrimeUnwinder() {
    if profileUnwinderWord.load(ordering: .relaxed) || Option.profileUnwind.read() == 0 { return }
    if gm_sys_backtrace_prime() != 0 { profileUnwinderWord.store(true, ordering: .relaxed) }
}

/// The sampling rate now (0: off). Slow paths only.
@inline(__always)
func profileRate() -> Int { profileRateWord.load(ordering: .relaxed) }

@inline(__always)
private func profileState() -> UnsafeMutableRawPointer? {
    UnsafeMutableRawPointer(bitPattern: profileStateWord.load(ordering: .acquiring))
}

@inline(__always)
private func header(_ st: UnsafeMutableRawPointer) -> UnsafeMutablePointer<ProfileHeader> {
    st.assumingMemoryBound(to: ProfileHeader.self)
}

@inline(__always)
private func bucketWord(_ st: UnsafeMutableRawPointer, _ b: Int, _ w: Int) -> UnsafeMutablePointer<Atomic<UInt>> {
    (st + profileBucketsOffset + (b &* profileBucketWords &+ w) &* 8).assumingMemoryBound(to: Atomic<UInt>.self)
}

private enum BucketField {
    static let hash = 0, size = 1, depth = 2, allocs = 3, allocBytes = 4, frees = 5, freeBytes = 6, pcs = 8
}

// MARK: - Turning it on and off

/// The rate the environment asks for: GOMALLOC_PROFILE_RATE when set, else the default when
/// GOMALLOC_PROFILE names a file, else 0.
func profileRateFromOptions() -> Int {
    // A value that is not all digits counts as unset (Options.swift's rule: the default).
    if let v = Option.profileRate.string(), v[0] != 0 {
        var i = 0
        while v[i] >= 0x30 && v[i] <= 0x39 { i &+= 1 }
        if v[i] == 0 { return Option.profileRate.read() }
    }
    return Option.profile.string() != nil ? profileDefaultRate : 0
}

/// Set the sampling rate (0 turns sampling off; samples and sampled objects stay tracked).
/// The first time it is turned on the state is mapped; false if that fails. Either way
/// the heap must exist. Switching on or off stops the world (see Role), unless `starting`:
/// the heap is not published yet. The caller holds no P and no lock.
@discardableResult
func profileSetRate(_ h: UnsafeMutablePointer<MHeap>, _ rate: Int, starting: Bool = false) -> Bool {
    let on = rate > 0
    if on == (profileRate() != 0) {
        if on { profileRateWord.store(rate, ordering: .relaxed) }
        return true
    }
    var st: UnsafeMutableRawPointer? = nil
    if on {
        guard let created = profileStateCreate(h) else { return false }
        st = created
    }
    // Switching: with the world stopped (unless the heap is not published yet, when no
    // mcache exists), so that no fast path runs while the caches change (see Role).
    if !starting { h.stopTheWorld() }
    profileRateWord.store(on ? rate : 0, ordering: .relaxed)
    h.pointee.fastClassTable = on ? (st.unsafelyUnwrapped + profileTableOffset).assumingMemoryBound(to: UInt8.self)
        : h.pointee.classTable
    profileSwitchCaches(h, on: on)
    if !starting { h.startTheWorld() }
    return true
}

/// With the world stopped (or no mcache yet): point the local frees of every cached noscan
/// span at the profiling rings (on) or back at its class's ring (off). On, also drop the
/// fast path's recent frees of those classes (their objects stay free in freeBits), empty
/// each cached span's allocCache window, and start every class's count afresh, so that the
/// first allocation of each class takes the slow path, which sets the budget.
private func profileSwitchCaches(_ h: UnsafeMutablePointer<MHeap>, on: Bool) {
    let empty = h.pointee.emptySpan
    for i in 0..<h.pointee.nprocs {
        let slot = h.proc(i)
        guard let cache = slot.mcache else { continue }
        for c in 2..<numSpanClasses {
            let noscan = c & 1 != 0
            let s = cache.pointee.alloc[c]
            if s != empty {
                s.setFreeRing(profiling: on)
                if on && noscan { s.pointee.allocCache = 0 }
            }
            var t = cache.retiredList(c).pointee.first
            while let r = t {
                r.setFreeRing(profiling: on)
                t = r.pointee.next
            }
            if on {
                if noscan { cache.clearRecent(c) }
                cache.profileSeen(c).pointee = slot.mallocs[c]
                cache.profileLeft(c).pointee = 0
            }
        }
    }
}

private func profileStateCreate(_ h: UnsafeMutablePointer<MHeap>) -> UnsafeMutableRawPointer? {
    if let st = profileState() { return st }
    lockHeapInitForProfile()
    defer { unlockHeapInitForProfile() }
    if let st = profileState() { return st }
    guard let st = sysAllocSparse(size: profileStateBytes) else { return nil }
    // The fast path's table while sampling: noscan requests keep their classes (budgeted,
    // see Role), scan requests map to class 0 and take the slow path.
    let table = (st + profileTableOffset).assumingMemoryBound(to: UInt8.self)
    for k in 0..<(4 &* fastClassTableEntries) {
        let noscanTable = (k / fastClassTableEntries) & 1 != 0
        table[k] = noscanTable ? h.pointee.classTable[k] : 0
    }
    var seed = UInt64(Option.profileSeed.read())
    if seed == 0 { seed = gm_sys_nanotime() ^ (UInt64(gm_sys_getpid()) << 32) }
    header(st).initialize(to: ProfileHeader(lock: RuntimeLock(rank: .profile), bucketCount: Atomic(0),
                                            droppedSamples: Atomic(0), droppedObjects: Atomic(0), objects: Atomic(0), seed: seed,
                                            seeded: Atomic(0)))
    profileStateWord.store(UInt(bitPattern: st), ordering: .releasing)
    return st
}

/// Profiling's own creation lock (a spin: it is taken once).
private let profileCreateLock = Atomic<Bool>(false)
private func lockHeapInitForProfile() {
    while profileCreateLock.exchange(true, ordering: .acquiring) { gm_sys_yield() }
}
private func unlockHeapInitForProfile() { profileCreateLock.store(false, ordering: .releasing) }

// MARK: - The countdown (Owner: P)

/// splitmix64: seeds a P's generator.
@inline(__always)
private func mix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z &>> 31)
}

/// ln(x) for 0 < x <= 1 without libm: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), and
/// ln m = 2 atanh((m - 1) / (m + 1)) by its series (|z| < 0.172: six terms, error < 1e-9).
func profileLog(_ x: Double) -> Double {
    var bits = x.bitPattern
    var e = Int((bits >> 52) & 0x7FF) - 1023
    bits = (bits & 0x000F_FFFF_FFFF_FFFF) | (UInt64(1023) << 52)
    var m = Double(bitPattern: bits)
    if m > 1.4142135623730951 { m *= 0.5; e += 1 }
    let z = (m - 1) / (m + 1), z2 = z * z
    let series = 1 + z2 * (1.0 / 3 + z2 * (1.0 / 5 + z2 * (1.0 / 7 + z2 * (1.0 / 9 + z2 / 11))))
    return Double(e) * 0.6931471805599453 + 2 * z * series
}

extension UnsafeMutablePointer where Pointee == MCache {
    /// Go's nextSample: bytes until the next sample, exponential with mean `rate` (at least 1).
    private func drawNextSample(_ rate: Int) -> Int {
        var r = pointee.sampleRandom
        if r == 0 {
            if let st = profileState() {
                r = mix64(header(st).pointee.seed &+ header(st).pointee.seeded.add(1, ordering: .relaxed).oldValue) | 1
            } else {
                r = 1
            }
        }
        // xorshift64*
        r ^= r &>> 12; r ^= r &<< 25; r ^= r &>> 27
        pointee.sampleRandom = r
        let u = Double((r &* 0x2545_F491_4F6C_DD1D) >> 11 &+ 1) * (1.0 / 9_007_199_254_740_992.0)  // (0, 1]
        let next = -profileLog(u) * Double(rate)
        return next < 1 ? 1 : next > 4.0e18 ? Int(4.0e18) : Int(next)
    }

    /// Heap profiling's countdown of small span class `spc` on this P, after the object the
    /// caller (holding the P) just took and counted in the P's mallocs: first the fast path's
    /// allocations of the class since the last look are charged (the budget set below kept
    /// them short of the threshold), then this one, which is to be sampled (true) if it
    /// reaches the threshold; then the fast path's budget for the class: the cached span's
    /// allocCache window is cut to the objects that precede the next sampled one (noscan
    /// classes; scan requests take the slow path while sampling). Each class's countdown is
    /// exponential with mean `rate` bytes, as Go's one per P: splitting a Poisson process of
    /// bytes by class gives one per class with the same rate.
    func profileCountClass(_ spc: SpanClass, slot: UnsafeMutablePointer<PSlot>, bytes: Int, rate: Int) -> Bool {
        let c = spc.index
        let n = slot.mallocs[c]
        let seen = profileSeen(c)
        let fast = Int(truncatingIfNeeded: n &- seen.pointee) &- 1
        seen.pointee = n
        var left = profileLeft(c).pointee
        if left == 0 { left = drawNextSample(rate) }
        if fast > 0 { left &-= fast &* bytes }
        let sampled = rate == 1 || left <= bytes
        left = sampled ? drawNextSample(rate) : left &- bytes
        profileLeft(c).pointee = left
        if spc.noscan { MCache.allocSlot(self, spc).pointee.limitAllocCache(rate == 1 ? 0 : (left &- 1) / bytes) }
        return sampled
    }

    /// Count an allocation of `bytes` against this P's countdown (Go's mallocgc: sample when
    /// size >= nextSample); true if it is to be sampled. Rate 1 samples everything.
    func profileCountdown(_ bytes: Int, rate: Int) -> Bool {
        if rate == 1 { return true }
        var n = pointee.nextSample
        if n == 0 { n = drawNextSample(rate) }
        if bytes < n {
            pointee.nextSample = n &- bytes
            return false
        }
        pointee.nextSample = drawNextSample(rate)
        return true
    }
}

// MARK: - Recording (the profile lock, holding a P)

/// Record a sampled allocation of `size` bytes at `addr` in span `s`. Caller holds a P
/// (so that a stopped world never sees the profile lock held). Walks the stack first.
@inline(never)
func profileRecord(addr: UInt, size: Int, span s: UnsafeMutablePointer<MSpan>) {
    guard let st = profileState() else { return }
    var pcs: InlineArray<32, UInt> = InlineArray(repeating: 0)  // profileMaxDepth
    let depth = withUnsafeMutableBytes(of: &pcs) { raw in
        let p = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
        // GOMALLOC_PROFILE_UNWIND=1, once primed: the .eh_frame unwinder; else frame pointers.
        if profileUnwinderWord.load(ordering: .relaxed) {
            let n = Int(gm_sys_backtrace_unwind(p, Int32(profileMaxDepth)))
            if n > 0 { return n }
        }
        return Int(gm_sys_backtrace_fp(p, Int32(profileMaxDepth)))
    }
    var hash = mix64(UInt64(size))
    for i in 0..<depth { hash = mix64(hash ^ UInt64(pcs[i])) }
    let hd = header(st)
    hd.pointee.lock.lock()
    defer { hd.pointee.lock.unlock() }
    // The bucket: find or append.
    let index = (st + profileIndexOffset).assumingMemoryBound(to: UInt32.self)
    var slot = Int(truncatingIfNeeded: hash) & (profileIndexCapacity &- 1)
    var bucket = -1
    while index[slot] != 0 {
        let b = Int(index[slot]) &- 1
        if bucketWord(st, b, BucketField.hash).pointee.load(ordering: .relaxed) == UInt(truncatingIfNeeded: hash)
            && Int(bucketWord(st, b, BucketField.size).pointee.load(ordering: .relaxed)) == size
            && Int(bucketWord(st, b, BucketField.depth).pointee.load(ordering: .relaxed)) == depth {
            var same = true
            for i in 0..<depth where bucketWord(st, b, BucketField.pcs &+ i).pointee.load(ordering: .relaxed) != pcs[i] {
                same = false
                break
            }
            if same { bucket = b; break }
        }
        slot = (slot &+ 1) & (profileIndexCapacity &- 1)
    }
    if bucket < 0 {
        let n = hd.pointee.bucketCount.load(ordering: .relaxed)
        if n >= profileBucketCapacity {
            hd.pointee.droppedSamples.add(1, ordering: .relaxed)
            return
        }
        bucket = n
        bucketWord(st, n, BucketField.hash).pointee.store(UInt(truncatingIfNeeded: hash), ordering: .relaxed)
        bucketWord(st, n, BucketField.size).pointee.store(UInt(size), ordering: .relaxed)
        bucketWord(st, n, BucketField.depth).pointee.store(UInt(depth), ordering: .relaxed)
        for i in 0..<depth { bucketWord(st, n, BucketField.pcs &+ i).pointee.store(pcs[i], ordering: .relaxed) }
        index[slot] = UInt32(n &+ 1)
        hd.pointee.bucketCount.store(n &+ 1, ordering: .releasing)  // I3
    }
    bucketWord(st, bucket, BucketField.allocs).pointee.add(1, ordering: .relaxed)
    bucketWord(st, bucket, BucketField.allocBytes).pointee.add(UInt(size), ordering: .relaxed)
    // The object (I2). Half full at most: probes stay short.
    if hd.pointee.objects.load(ordering: .relaxed) >= profileObjectCapacity / 2 {
        hd.pointee.droppedObjects.add(1, ordering: .relaxed)
        return
    }
    let objects = (st + profileObjectsOffset).assumingMemoryBound(to: UInt.self)
    var o = objectSlot(addr)
    while objects[o &* 2] != 0 && objects[o &* 2] != addr { o = (o &+ 1) & (profileObjectCapacity &- 1) }
    if objects[o &* 2] == 0 {
        hd.pointee.objects.add(1, ordering: .relaxed)
        s.profiledObjects &+= 1
    }
    objects[o &* 2] = addr
    objects[o &* 2 &+ 1] = UInt(bucket)
    s.fastFreeLimit = 0
}

@inline(__always)
private func objectSlot(_ addr: UInt) -> Int {
    Int(truncatingIfNeeded: (UInt64(addr >> 4) &* 0x9E37_79B9_7F4A_7C15) >> 40) & (profileObjectCapacity &- 1)
}

/// If `addr` (about to be freed; an object of span `s`, whose profiledObjects is nonzero) is
/// a sampled object: count its free and forget it (I2), and once the span holds no sampled
/// object give its frees back to the fast path. Takes a P and the profile lock; before the
/// free is recorded, so that the address cannot be handed out (and sampled) again meanwhile.
@inline(never)
func profileFree(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, addr: UInt) {
    guard let st = profileState() else { return }
    let slot = h.acquireP()
    let hd = header(st)
    hd.pointee.lock.lock()
    let objects = (st + profileObjectsOffset).assumingMemoryBound(to: UInt.self)
    var o = objectSlot(addr)
    while objects[o &* 2] != 0 && objects[o &* 2] != addr { o = (o &+ 1) & (profileObjectCapacity &- 1) }
    if objects[o &* 2] == addr {
        let b = Int(objects[o &* 2 &+ 1])
        bucketWord(st, b, BucketField.frees).pointee.add(1, ordering: .relaxed)
        bucketWord(st, b, BucketField.freeBytes).pointee.add(bucketWord(st, b, BucketField.size).pointee.load(ordering: .relaxed),
                                                             ordering: .relaxed)
        // Backward-shift deletion keeps every probe run unbroken.
        var hole = o
        var j = o
        while true {
            j = (j &+ 1) & (profileObjectCapacity &- 1)
            let a = objects[j &* 2]
            if a == 0 { break }
            let home = objectSlot(a)
            // Move j into the hole if its home is not cyclically in (hole, j].
            let inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j)
            if !inRange {
                objects[hole &* 2] = a
                objects[hole &* 2 &+ 1] = objects[j &* 2 &+ 1]
                hole = j
            }
        }
        objects[hole &* 2] = 0
        objects[hole &* 2 &+ 1] = 0
        hd.pointee.objects.subtract(1, ordering: .relaxed)
        if s.profiledObjects > 0 {
            s.profiledObjects &-= 1
            // (In the hardened mode every span keeps 0: Debug.swift checks every free.)
            if s.profiledObjects == 0 && s.spanClass.sizeClass != 0 && s.kind == SpanKind.ordinary
                && !h.pointee.debugMode {
                s.fastFreeLimit = s.pointee.nelemsWord
            }
        }
    }
    hd.pointee.lock.unlock()
    h.releaseP(slot)
}

/// A sampled large allocation's countdown and record (mallocLarge holds no P).
@inline(never)
func profileLarge(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, rate: Int) {
    let slot = h.acquireP()
    if let cache = mcacheOf(h, slot), cache.profileCountdown(s.pointee.npages &* pageSize, rate: rate) {
        profileRecord(addr: s.pointee.startAddr, size: s.pointee.npages &* pageSize, span: s)
    }
    h.releaseP(slot)
}

// MARK: - Checks (Invariants.swift; the world stopped)

/// Profile I2, recounted: every object in the table is a live object of an in-use span, and
/// the table holds as many as the spans' profiledObjects say (`spansSay`); I4 per bucket.
func checkProfileObjects(_ h: UnsafeMutablePointer<MHeap>, spansSay: Int) -> InvariantViolation? {
    guard let st = profileState() else {
        return spansSay == 0 ? nil : InvariantViolation(message: "Profile.I2: spans count sampled objects without a profile", address: UInt(spansSay))
    }
    let objects = (st + profileObjectsOffset).assumingMemoryBound(to: UInt.self)
    var n = 0
    for o in 0..<profileObjectCapacity {
        let addr = objects[o &* 2]
        if addr == 0 { continue }
        n &+= 1
        guard let s = h.spanOf(addr), s != h.pointee.tombstone,
              s.pointee.state.load(ordering: .relaxed) == SpanState.inUse.rawValue, s.profiledObjects != 0,
              s.spanClass.sizeClass == 0 ? addr == s.pointee.startAddr : s.isLive(s.objIndex(addr)),
              Int(objects[o &* 2 &+ 1]) < header(st).pointee.bucketCount.load(ordering: .relaxed) else {
            return InvariantViolation(message: "Profile.I2: a remembered sampled object is not a live object of a flagged span", address: addr)
        }
    }
    if n != spansSay || n != header(st).pointee.objects.load(ordering: .relaxed) {
        return InvariantViolation(message: "Profile.I2: sampled objects in the table differ from the spans' counts", address: UInt(n))
    }
    for b in 0..<profileBucketCount() {
        let v = profileBucket(b)
        if v.frees > v.allocs || v.freeBytes > v.allocBytes {
            return InvariantViolation(message: "Profile.I4: a bucket freed more than it allocated", address: UInt(b))
        }
    }
    return nil
}

// MARK: - Reading (holds nothing: I3)

/// Buckets recorded so far.
package func profileBucketCount() -> Int {
    guard let st = profileState() else { return 0 }
    return header(st).pointee.bucketCount.load(ordering: .acquiring)
}

/// Bucket `b` (< profileBucketCount()): raw sample counts and its stack (innermost first).
package struct ProfileBucketView {
    package var allocs: Int
    package var allocBytes: Int
    package var frees: Int
    package var freeBytes: Int
    package var size: Int
    package var depth: Int
    let base: UnsafeMutablePointer<Atomic<UInt>>

    package func pc(_ i: Int) -> UInt { (base + BucketField.pcs + i).pointee.load(ordering: .relaxed) }
}

package func profileBucket(_ b: Int) -> ProfileBucketView {
    let st = profileState().unsafelyUnwrapped
    func w(_ f: Int) -> Int { Int(bitPattern: bucketWord(st, b, f).pointee.load(ordering: .relaxed)) }
    return ProfileBucketView(allocs: w(BucketField.allocs), allocBytes: w(BucketField.allocBytes),
                             frees: w(BucketField.frees), freeBytes: w(BucketField.freeBytes),
                             size: w(BucketField.size), depth: w(BucketField.depth), base: bucketWord(st, b, 0))
}

/// Samples lost to full tables (see the dump's `dropped` line).
package func profileDropped() -> (samples: Int, objects: Int) {
    guard let st = profileState() else { return (0, 0) }
    return (header(st).pointee.droppedSamples.load(ordering: .relaxed), header(st).pointee.droppedObjects.load(ordering: .relaxed))
}

/// The sampling rate now (0 = off), for the Swift library.
package func profileCurrentRate() -> Int { profileRate() }

/// Turn sampling on at `rate` bytes, or off with 0 (the Swift library; tests). false if the
/// state cannot be mapped or the heap cannot be set up.
package func setProfileRate(_ rate: Int) -> Bool {
    guard let h = heap() else { return false }
    // (The unwinder is the drop-in's: here the core shares its module with the program's
    // Swift code, which frame pointers walk anyway.)
    return profileSetRate(h, rate)
}

/// Write the dump (the format above) to `fd`. Holds nothing; async-signal-safe.
package func writeProfile(fd: Int32) {
    var w = DumpWriter(fd: fd)
    w.append("gomalloc-profile 1 rate")
    w.field(profileRate())
    w.append(" pid")
    w.field(Int(gm_sys_getpid()))
    w.appendByte(0x0A)
    let n = profileBucketCount()
    for b in 0..<n {
        let v = profileBucket(b)
        w.append("sample")
        w.field(v.allocs)
        w.field(v.allocBytes)
        w.field(v.frees)
        w.field(v.freeBytes)
        w.field(v.size)
        for i in 0..<v.depth {
            w.appendByte(0x20)
            w.append(hex: v.pc(i))
        }
        w.appendByte(0x0A)
    }
    let d = profileDropped()
    w.append("dropped")
    w.field(d.samples)
    w.field(d.objects)
    w.append("\nmaps\n")
    w.flush()
    let maps: StaticString = "/proc/self/maps"
    _ = gm_sys_copy_file(UnsafeRawPointer(maps.utf8Start).assumingMemoryBound(to: CChar.self), fd)
    w.append("end\n")
    w.flush()
}

/// Write the dump to `path` (`%p`: the pid). false if profiling was never on or the file
/// cannot be created.
func writeProfile(path: UnsafePointer<CChar>) -> Bool {
    if profileState() == nil { return false }
    let fd = createDumpFile(path)
    if fd < 0 { return false }
    writeProfile(fd: fd)
    gm_sys_close(fd)
    return true
}

// MARK: - GOMALLOC_PROFILE: the dump at exit and on SIGUSR2

/// With GOMALLOC_PROFILE set and sampling on, write the dump at exit and on SIGUSR2 (unless
/// the program handles SIGUSR2 itself). Called where registerHeapMapAtExit is.
func registerProfileAtExit() {
    if profileState() != nil { profilePrimeUnwinder() }
    guard Option.profile.string() != nil, profileState() != nil else { return }
    if profileExitRegistered.exchange(true, ordering: .acquiringAndReleasing) { return }
    profilePID.store(Int(gm_sys_getpid()), ordering: .relaxed)
    _ = gm_sys_atexit(writeProfileAtExit)
    _ = gm_sys_sigusr2(profileOnSignal)
}

/// The registering process writes; a forked child only when the path has `%p` (its own file).
private func profileShouldWrite(_ path: UnsafePointer<CChar>) -> Bool {
    if profilePID.load(ordering: .relaxed) == Int(gm_sys_getpid()) { return true }
    var i = 0
    while path[i] != 0 {
        if path[i] == 0x25 && path[i &+ 1] == 0x70 { return true }
        i &+= 1
    }
    return false
}

private func writeProfileAtExit() {
    guard let path = Option.profile.string(), profileShouldWrite(path) else { return }
    _ = writeProfile(path: path)
}

private func profileOnSignal(_ sig: Int32) {
    let saved = gm_sys_errno()
    writeProfileAtExit()
    gm_sys_set_errno(saved)
}

/// gomalloc_profile_dump(path): write the dump now; 0, or -1 if sampling was never on or
/// the file cannot be created.
@c(gm_profile_dump)
public func gmProfileDump(_ path: UnsafePointer<CChar>?) -> Int32 {
    guard let path else { return -1 }
    return writeProfile(path: path) ? 0 : -1
}
