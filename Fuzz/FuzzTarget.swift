// FuzzTarget.swift — the libFuzzer target: bytes become a sequence of allocator operations,
// checked against a model after every step.
//
// Built by Fuzz/build.sh (not by SwiftPM: libFuzzer brings its own main) as one module with
// the hosted core, so it drives the same entry points the drop-in exports (gmMalloc,
// gmCalloc, gmRealloc, gmReallocarray, the aligned family, free_sized, usable size, trim,
// the stack allocator, heap profiling's switch) on the hosted heap. Each input is read 4 bytes per operation: an
// opcode, a slot (of 64), and two bytes of size. The model keeps every live block's size,
// requested alignment and a tag; after every operation it checks each touched block's
// contents (a tag-derived pattern written when it was made), that usable size >= size,
// that alignment holds, that a new block overlaps no live one, that calloc'd memory is zero
// and realloc kept the old contents; then checkInvariants(). A second thread frees blocks
// handed to it (a synchronous hand-off), so remote frees are covered. Everything is freed
// at the end of each input, so inputs do not depend on each other.
import CGoMallocSys
import Glibc

private struct Slot { var p: UInt = 0; var n = 0; var align = 0; var tag: UInt8 = 0; var stack = false }
private var slots = [Slot](repeating: Slot(), count: 64)

private func pattern(_ tag: UInt8, _ i: Int) -> UInt8 { tag &+ UInt8(truncatingIfNeeded: i &* 31 &+ (i >> 8)) }

private func fill(_ s: Slot) {
    let b = UnsafeMutablePointer<UInt8>(bitPattern: s.p)!
    for i in stride(from: 0, to: s.n, by: s.n > 4096 ? 61 : 1) { b[i] = pattern(s.tag, i) }
    if s.n > 0 { b[s.n - 1] = pattern(s.tag, s.n - 1) }
}

private func verify(_ s: Slot, upTo n: Int? = nil) {
    let len = n ?? s.n
    let b = UnsafeMutablePointer<UInt8>(bitPattern: s.p)!
    for i in stride(from: 0, to: len, by: s.n > 4096 ? 61 : 1) where b[i] != pattern(s.tag, i) {
        fatalError("fuzz: block \(s.p) of \(s.n) bytes: byte \(i) changed")
    }
    if n == nil && s.n > 0 && b[s.n - 1] != pattern(s.tag, s.n - 1) { fatalError("fuzz: last byte changed") }
}

private func checkNew(_ p: UInt, _ n: Int, align: Int, except: Int) {
    if align > 1 && p % UInt(align) != 0 { fatalError("fuzz: \(p) not aligned to \(align)") }
    if !slots[except].stack && gmMallocUsableSize(UnsafeMutableRawPointer(bitPattern: p)) < n {
        fatalError("fuzz: usable size below \(n)")
    }
    let end = p + UInt(max(n, 1))
    for (i, s) in slots.enumerated() where i != except && s.p != 0 {
        if p < s.p + UInt(max(s.n, 1)) && s.p < end { fatalError("fuzz: \(p)+\(n) overlaps \(s.p)+\(s.n)") }
    }
}

// MARK: - The hand-off thread

private var handoffLock = pthread_mutex_t()
private var handoffCond = pthread_cond_t()
private var handoffBox: UInt = 0       // a block to free (0: none)
private var handoffStarted = false

private func startHandoff() {
    if handoffStarted { return }
    handoffStarted = true
    pthread_mutex_init(&handoffLock, nil)
    pthread_cond_init(&handoffCond, nil)
    var t = pthread_t()
    pthread_create(&t, nil, { _ in
        pthread_mutex_lock(&handoffLock)
        while true {
            while handoffBox == 0 { pthread_cond_wait(&handoffCond, &handoffLock) }
            gmFree(UnsafeMutableRawPointer(bitPattern: handoffBox))
            handoffBox = 0
            pthread_cond_broadcast(&handoffCond)
        }
    }, nil)
}

/// Free `p` on the other thread and wait until it has.
private func freeRemotely(_ p: UInt) {
    pthread_mutex_lock(&handoffLock)
    handoffBox = p
    pthread_cond_broadcast(&handoffCond)
    while handoffBox != 0 { pthread_cond_wait(&handoffCond, &handoffLock) }
    pthread_mutex_unlock(&handoffLock)
}

// MARK: - One input

private func release(_ i: Int) {
    let s = slots[i]
    if s.p == 0 { return }
    verify(s)
    if s.stack { gmStackFree(UnsafeMutableRawPointer(bitPattern: s.p), s.n) } else { gmFree(UnsafeMutableRawPointer(bitPattern: s.p)) }
    slots[i] = Slot()
}

private func size(_ a: UInt8, _ b: UInt8) -> Int {
    let v = Int(a) << 8 | Int(b)
    switch v >> 14 {  // mostly small, sometimes large (up to 1 MiB: 64 of them keep the
    case 0, 1: return v & 0x3FF  // heap, and so each invariant walk, small)
    case 2: return v & 0x7FFF
    default: return (v & 0x3FFF) << 6
    }
}

func runFuzzInput(_ data: UnsafeRawBufferPointer) {
    startHandoff()
    var tag: UInt8 = 1
    var k = 0
    while k + 4 <= data.count {
        let op = data[k] % 15, i = Int(data[k + 1]) % 64, n = size(data[k + 2], data[k + 3])
        k += 4
        tag &+= 1
        var made: UInt = 0, align = 0, zeroed = false
        switch op {
        case 0, 1: release(i); made = UInt(bitPattern: gmMalloc(n)); align = n > 8 ? 16 : 1
        case 2: release(i); made = UInt(bitPattern: gmCalloc(1 + n % 64, max(n / 64, 1))); zeroed = true
        case 3, 4:
            let s = slots[i]
            if s.p == 0 || s.stack { break }
            verify(s)
            guard let q = gmRealloc(UnsafeMutableRawPointer(bitPattern: s.p), n) else {
                if n != 0 { verify(s) } else { slots[i] = Slot() }  // realloc(p, 0) frees
                break
            }
            // The old contents, read with the old block's pattern stride.
            verify(Slot(p: UInt(bitPattern: q), n: s.n, align: 16, tag: s.tag, stack: false), upTo: min(s.n, n))
            var t = Slot(p: UInt(bitPattern: q), n: n, align: 16, tag: s.tag, stack: false)
            slots[i] = Slot()
            checkNew(t.p, n, align: n > 8 ? 16 : 1, except: i)
            t.tag = tag
            fill(t)
            slots[i] = t
        case 5: release(i); align = 16 << (n % 9); made = UInt(bitPattern: gmAlignedAlloc(align, n))
        case 6:
            release(i)
            align = 8 << (n % 12)
            var out: UnsafeMutableRawPointer? = nil
            if gmPosixMemalign(&out, align, n) == 0 { made = UInt(bitPattern: out) }
        case 7: release(i); made = UInt(bitPattern: gmMemalign(1 << (n % 14), n)); align = 1 << (n % 14)
        case 8: release(i)
        case 9:  // free on the other thread
            let s = slots[i]
            if s.p != 0 && !s.stack { verify(s); freeRemotely(s.p); slots[i] = Slot() }
        case 10:  // free_sized with the size asked for
            let s = slots[i]
            if s.p != 0 && !s.stack { verify(s); gmFreeSized(UnsafeMutableRawPointer(bitPattern: s.p), s.n); slots[i] = Slot() }
        case 11:
            release(i)
            let want = 2048 << (n % 10)
            if let p = gmStackAlloc(want) { slots[i] = Slot(p: UInt(bitPattern: p), n: want, align: 2048, tag: tag, stack: true); fill(slots[i]) }
        case 12: _ = gmMallocTrim(0)
        case 14:  // heap profiling off, every allocation, or sampled (the fast path budgeted)
            _ = setProfileRate([0, 1, 256, 65536][n % 4])
        default: release(i); made = UInt(bitPattern: gmReallocarray(nil, 1 + n % 16, max(n / 16, 1)))
        }
        if made != 0 {
            let asked = op == 2 ? (1 + n % 64) * max(n / 64, 1) : op == 13 ? (1 + n % 16) * max(n / 16, 1) : n
            if zeroed {
                let b = UnsafeMutablePointer<UInt8>(bitPattern: made)!
                for z in 0..<asked where b[z] != 0 { fatalError("fuzz: calloc byte \(z) not zero") }
            }
            checkNew(made, asked, align: align, except: i)
            slots[i] = Slot(p: made, n: asked, align: align, tag: tag, stack: false)
            fill(slots[i])
        }
        if let v = checkInvariants() { fatalError("fuzz: invariant: \(v.message)") }
    }
    for i in 0..<64 { release(i) }
    _ = setProfileRate(0)
    if let v = checkInvariants() { fatalError("fuzz: invariant at the end: \(v.message)") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    runFuzzInput(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}
