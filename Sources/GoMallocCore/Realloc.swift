// Realloc.swift — realloc: in place when the block can stay, else move, and the large-block policy.
//
// Role: realloc(p, n) for a live block p and n > 0: a small block stays when n keeps its
//   size class; a large block shrinks in place (its tail pages go back to the heap) or
//   grows in place when the pages after it are free (committing the next chunks at the end
//   of the heap); a large block too big to copy cheaply moves by mremap; everything else is
//   malloc, copy, free.
// Go counterpart: none (Go has no realloc; growslice allocates and copies).
// Invariants:
//   I1. The first min(old, n) bytes are preserved; on failure the old block is untouched.
//   I2. At most `largeMoveBudget` mremap moves per process (see moveLargeMinPages).
// Concurrency: the caller owns the block; heap changes take the heap lock (MHeap).
// Failure: nil (errno ENOMEM from malloc) and the old block intact.
import CGoMallocSys
import Synchronization

/// Large blocks of at least this many pages (32 MiB) move by mremap instead of memcpy when
/// realloc cannot grow them in place. Every move splits a kernel mapping (the moved pages
/// become a mapping of their own), and a process may have at most ~65,530 of them: moving
/// every megabyte-sized buffer made a realloc-heavy test reach 31,712 mappings and run 7x
/// slower than glibc. So only blocks big enough that copying them really costs move, and
/// at most largeMoveBudget times per process; the rest are copied.
let moveLargeMinPages = 4096
let largeMoveBudget = 2048
/// Moves still allowed. Atomic: a failed decrement past zero is undone (relaxed: a count).
private let largeMovesLeft = Atomic<Int>(largeMoveBudget)

/// realloc for a non-nil pointer and a size of 1...maxRequest.
func reallocObject(_ ptr: UnsafeMutableRawPointer, size: Int, cABI: Bool) -> UnsafeMutableRawPointer? {
    let (h, s, i) = findObject(UInt(bitPattern: ptr), function: "realloc")
    let c = s.spanClass.sizeClass
    // Blocks keep their kind (scan or noscan) when they move; C's are all noscan.
    let noscan = s.spanClass.noscan
    var old = s.elemSize
    if s.isTiny {
        // A packed object stays while the new size fits its rounded size.
        old = tinyUsableSize(s, index: i, addr: UInt(bitPattern: ptr), requireLive: true, function: "realloc")
        if size <= old { return ptr }
    } else if c != 0 {
        if !s.isLive(i) {
            reportBadPointer(function: "realloc", problem: "invalid pointer", address: UInt(bitPattern: ptr))
        }
        if size <= maxSmallSize && h.sizeClass(for: size, cABI: cABI) == c { return ptr }
    } else if size > maxSmallSize && !h.pointee.debugMode {  // a guarded block always moves (Debug.swift I3)
        let npages = (size &+ pageMask) >> pageShift
        if npages == s.pointee.npages { return ptr }
        if npages < s.pointee.npages {
            h.shrinkLarge(s, to: npages)
            return ptr
        }
        if h.growLargeInPlace(s, to: npages) { return ptr }
        if s.pointee.npages >= moveLargeMinPages && s.profiledObjects != 0 {
            profileFree(h, s, addr: UInt(bitPattern: ptr))  // its span is freed below (Profile.swift I2)
        }
        if s.pointee.npages >= moveLargeMinPages, let t = moveLarge(h, s, to: npages) {
            return UnsafeMutableRawPointer(bitPattern: t.pointee.startAddr)
        }
    }
    guard let new = mallocgc(size, cABI: cABI, zero: false, noscan: noscan) else { return nil }
    gm_sys_memcpy(new, ptr, Swift.min(old, size))
    freeObject(ptr, function: "realloc")
    return new
}

/// A new large span of `npages`, onto which the kernel moves the old block's pages (no
/// copy); the old span is freed as already released. nil (nothing changed) when the budget
/// is spent or the kernel refuses.
private func moveLarge(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>,
                       to npages: Int) -> UnsafeMutablePointer<MSpan>? {
    if largeMovesLeft.subtract(1, ordering: .relaxed).newValue < 0 {
        largeMovesLeft.add(1, ordering: .relaxed)
        return nil
    }
    guard let t = h.allocSpan(npages: npages, spanClass: s.spanClass) else {
        largeMovesLeft.add(1, ordering: .relaxed)
        return nil
    }
    let n = Swift.min(s.pointee.npages, npages)
    guard sysMovePages(from: s.pointee.startAddr, to: t.pointee.startAddr, size: n &* pageSize) else {
        largeMovesLeft.add(1, ordering: .relaxed)
        h.freeSpan(t)
        return nil
    }
    h.freeSpan(s, released: true)
    return t
}

/// mremap moves still allowed (tests check that a realloc moved rather than copied).
package func largeMovesRemaining() -> Int { largeMovesLeft.load(ordering: .relaxed) }
