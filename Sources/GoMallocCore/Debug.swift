// Debug.swift — GOMALLOC_DEBUG=1, the hardened mode: freed memory poisoned and checked when
// it is handed out again, guard pages after large objects.
//
// Role: catch the writes a program makes to memory it has freed, and the overruns past the
//   end of a large block, where they happen or at the next allocation of the object. Every
//   small object freed (through the slow free path: fastFreeLimit is 0 on every span) is
//   filled with freedPoisonByte once its free has been checked valid and before it is
//   recorded, and a new small span is filled whole; when malloc hands such an object out again (every noscan request — all of C's
//   — takes the slow path: the fast path's tiny-size test is widened to every small size)
//   it must still read as poison, else the write is reported with the object and the
//   offset, and the process aborts. A large block gets one more page, made inaccessible
//   (PROT_NONE) so that an overrun faults at once; its usable size stops before it. Off by default: every malloc and free takes the slow path and touches the
//   whole object.
// Go counterpart: none in Go 1.16's allocator (its debug.clobberfree fills freed memory with
//   0xdeadbeef but does not check it); mimalloc's MI_DEBUG fills freed blocks with 0xDF and
//   checks on reuse; its MI_SECURE puts guard pages between segments.
// Invariants:
//   I1. An object is poisoned only after its free was checked valid and before the free is
//       recorded (until then it cannot be handed out again).
//   I2. Every free slot of a small ordinary span reads as poison: a new span is poisoned
//       whole when it is set up (initSpan), every free poisons its object (I1), and nothing
//       but a program's bug writes to a free slot. So the whole object is checked, first
//       word included.
//   I3. A guarded large span has one page more than its usable size, which its
//       elemSizeWord holds; that last page is the guard (PROT_NONE). It never grows or
//       shrinks in place (realloc moves it), and its guard is lifted before its pages go
//       back to the heap.
// Concurrency: the poison is written by the freeing thread before its free is published
//   (release by the P or the remote-free fetch-or, as the object's other bytes); checked by
//   the allocating thread after it took the object (acquire by the same protocols).
// Failure: a guard that the kernel refuses (its mapping limit) leaves the block unguarded;
//   nothing else changes.
import CGoMallocSys

/// The byte freed small objects are filled with (mimalloc's choice).
let freedPoisonByte: UInt8 = 0xDF
private let freedPoisonWord: UInt64 = 0xDFDF_DFDF_DFDF_DFDF

/// Poison a small object being freed (I1).
@inline(never)
func poisonFreed(_ addr: UInt, size: Int) {
    gm_sys_memset(UnsafeMutableRawPointer(bitPattern: addr).unsafelyUnwrapped, Int32(freedPoisonByte), size)
}

/// Check an object just handed out (I2): its bytes must still be poison. Holds nothing
/// (reports abort).
func checkFreedPoison(_ p: UnsafeMutableRawPointer, size: Int) {
    let words = p.assumingMemoryBound(to: UInt64.self)
    for i in 0..<(size >> 3) where words[i] != freedPoisonWord {
        // The first byte that differs.
        let bytes = p.assumingMemoryBound(to: UInt8.self)
        var off = i << 3
        while bytes[off] == freedPoisonByte { off &+= 1 }
        reportWriteAfterFree(object: UInt(bitPattern: p), offset: off)
    }
}

/// `gomalloc: malloc(): write after free 0x… (byte N)`, then abort.
private func reportWriteAfterFree(object: UInt, offset: Int) -> Never {
    var line = ReportLine()
    line.append("gomalloc: malloc(): write after free ")
    line.append(hex: object)
    line.append(" (byte ")
    line.append(decimal: offset)
    line.append(")")
    line.write(to: 2)
    gm_sys_abort()
}

/// mallocSlow's noscan small request in the hardened mode: an object of its class, checked
/// (I2), then zeroed if asked.
@inline(never)
func mallocDebug(_ h: UnsafeMutablePointer<MHeap>, size: Int, cABI: Bool, zero: Bool) -> UnsafeMutableRawPointer? {
    let spc = h.spanClass(for: size, cABI: cABI, noscan: true)
    guard let p = mallocSmall(h, spc, size: size, zero: false) else { return nil }
    checkFreedPoison(p, size: Int(h.pointee.sizeClasses.classToSize[spc.sizeClass]))
    if zero { gm_sys_memset(p, 0, size) }
    return p
}

/// Go's largeAlloc in the hardened mode: one page more, made a guard (I3). The usable size
/// stays the pages asked for, as without the guard (malloc of a block's usable size gives
/// the same usable size).
func mallocLargeGuarded(_ h: UnsafeMutablePointer<MHeap>, npages: Int, alignPages: Int, noscan: Bool) -> UnsafeMutablePointer<MSpan>? {
    let usable = npages &* pageSize
    if usable > Int(UInt32.max) {  // elemSizeWord cannot say it: no guard
        return h.allocSpan(npages: npages, spanClass: SpanClass(sizeClass: 0, noscan: noscan), alignPages: alignPages)
    }
    guard let s = h.allocSpan(npages: npages &+ 1, spanClass: SpanClass(sizeClass: 0, noscan: noscan), alignPages: alignPages)
    else { return nil }
    // Where the OS page is larger than ours the extra page stays unguarded, only unused.
    if Int(gm_sys_os_page_size()) <= pageSize { _ = sysGuard(s.pointee.startAddr &+ UInt(usable), size: pageSize) }
    s.pointee.elemSizeWord = UInt32(usable)
    return s
}

/// The guard of a guarded large span lifted before its pages go back (I3). (mprotect of a
/// page that was never guarded, where the guard was refused, changes nothing.)
func unguardLarge(_ s: UnsafeMutablePointer<MSpan>) {
    let bytes = s.pointee.npages &* pageSize
    let usable = Int(s.pointee.elemSizeWord)
    if usable != 0 && usable < bytes {
        _ = sysUnguard(s.pointee.startAddr &+ UInt(usable), size: bytes &- usable)
    }
}
