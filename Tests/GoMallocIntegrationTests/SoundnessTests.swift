// SoundnessTests.swift — the races and protocol holes a review found, each replayed exactly.
//
//   * malloc_trim racing a remote free: reclaimAll must publish each swept span so that a
//     freer racing it either sees the new allocCount or is seen by the settle (MCentral).
//   * fork while another thread is inside the first initialisation (fork_init.c).
//   * misuse found while holding a P or an mcentral lock is reported only after they are
//     released: a SIGABRT handler finds the allocator free, and can even allocate.
//   * retired spans are bounded per P (MCache.maxRetiredPages).
//   * lock ranks are checked in debug builds.
import Foundation
import Synchronization
import XCTest
import CGoMallocSys
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class SoundnessTests: XCTestCase {
    /// The C programs this file runs (DropInTests.testEveryProgramHasATest counts them too).
    static let programs: [String: String] = [
        "fork_init.c": "testForkDuringFirstInitialisation",
    ]

    // MARK: - malloc_trim racing a remote free

    /// reclaimAll sweeps a span on the partial list with one remote free merged (x); right
    /// after the sweep takes that free's remoteBits word — before it stores the new
    /// allocCount — the last live object (y) is freed remotely. That freer sees the old
    /// allocCount (2) and one pending bit, so it does not settle the span; the sweeper must
    /// then see y's bit and give the all-free span back to the heap, not leave it on the
    /// partial list.
    func testTrimRacingARemoteFreeGivesTheEmptySpanBack() {
        runScenario(trimRacingRemoteFreeScenario, bug: "an all-free span was left on the partial list")
    }

    // MARK: - fork during the first initialisation

    /// A child forked while another thread holds the initialisation lock must not inherit it
    /// held (it would spin for ever in its first malloc).
    func testForkDuringFirstInitialisation() throws {
        let library = try DropIn.requireLibrary("replaying the first initialisation")
        guard let nm = DropIn.which("nm") else { return XCTFail("nm (binutils) is needed to find heapInitLock") }
        let symbols = try DropIn.run(nm, [library])
        // The variable itself: a data or bss symbol (debug builds also have its accessors).
        let fields = symbols.stdout.split(separator: "\n").map { $0.split(separator: " ") }
        guard let entry = fields.first(where: { $0.count == 3 && "bBdD".contains($0[1]) && $0[2].contains("heapInitLock") && $0[2].contains("Atomic") }),
              let offset = entry.first else {
            return XCTFail("no heapInitLock symbol in \(library)")
        }
        let exe = try DropIn.compile("fork_init.c", extraFlags: ["-ldl"])
        let r = try DropIn.run(exe, [String(offset)], environment: DropIn.environment(for: .gomalloc(library: library)),
                               timeout: 60)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stdout.split(separator: "\n").last.map(String.init), "OK fork_init", r.summary)
    }

    // MARK: - Reports made with nothing held

    /// A double free found by a remote free's checks (the span sits in mcentral).
    func testRemoteDoubleFreeIsReportedWithNothingHeld() {
        expectReportWithNothingHeld { () -> UInt in
            let x = GoAllocator.allocate(byteCount: 600, alignment: 8)!
            let y = GoAllocator.allocate(byteCount: 600, alignment: 8)!
            GoAllocator.trim()  // the span leaves this P's cache: every free below is remote
            GoAllocator.deallocate(x)
            _ = y
            return UInt(bitPattern: x)
        } misuse: { x in
            GoAllocator.deallocate(UnsafeMutableRawPointer(bitPattern: x)!)
        }
    }

    /// A double free only a sweep can see: the object freed by this P (freeBits) and, at
    /// the same time, by another (remoteBits; set here by hand as a racing thread would).
    /// The sweep runs under the mcentral lock with the P held; the report must wait.
    func testDoubleFreeFoundBySweepIsReportedWithNothingHeld() {
        expectReportWithNothingHeld { () -> UInt in
            let x = GoAllocator.allocate(byteCount: 600, alignment: 8)!
            let h = theHeap()!
            let s = h.spanOf(UInt(bitPattern: x))!
            let i = s.objIndex(UInt(bitPattern: x))
            GoAllocator.deallocate(x)  // local: the span is this P's
            _ = s.remoteWord(i >> 6).pointee.bitwiseOr(UInt64(1) << UInt64(i & 63), ordering: .relaxed)
            return UInt(bitPattern: x)
        } misuse: { _ in
            GoAllocator.trim()  // uncacheSpan sweeps the span
        }
    }

    /// In a child: `setUp` returns the address the report will name; `misuse` must abort with
    /// `gomalloc: free(): double free <address>`, and when the SIGABRT handler runs, no P, no
    /// mcentral lock and no heap lock may be held.
    private func expectReportWithNothingHeld(_ setUp: @escaping () -> UInt, misuse: @escaping (UInt) -> Void,
                                             file: StaticString = #filePath, line: UInt = #line) {
        GoAllocator.deallocate(GoAllocator.allocate(byteCount: 16, alignment: 8)!)
        let r = runInChild {
            let address = setUp()
            var sa = sigaction()
            sa.__sigaction_handler.sa_handler = abortHandlerChecksNothingHeld
            sigemptyset(&sa.sa_mask)
            sigaction(SIGABRT, &sa, nil)
            misuse(address)
            _exit(9)  // not reported at all
        }
        XCTAssertEqual(r.signal, 0, r.stderr, file: file, line: line)
        XCTAssertEqual(r.status, 7, "7: reported with nothing held; 8: reported holding a P or a lock; 9: not reported. \(r.stderr)",
                       file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("gomalloc: free(): double free 0x"), r.stderr, file: file, line: line)
    }

    /// Run `stress_misuse remote-late-double-free handler` with one P: the program's SIGABRT
    /// handler mallocs. Reported while holding the only P, that malloc would wait for ever.
    func testAbortHandlerCanAllocateWithOneP() throws {
        let library = try DropIn.requireLibrary("the misuse reports")
        let exe = try DropIn.compile("stress_misuse.c", extraFlags: ["-O2"], tag: "O2")
        let env = DropIn.environment(for: .gomalloc(library: library), ["GOMALLOC_MAXPROCS": "1"])
        let r = try DropIn.run(exe, ["remote-late-double-free", "handler"], environment: env, timeout: 60)
        XCTAssertTrue(r.exitedNormally && r.status == 7, r.summary)
        XCTAssertTrue(r.stdout.contains("handler malloc ok"), r.summary)
        XCTAssertTrue(r.stderr.hasPrefix("gomalloc: free(): double free 0x"), r.summary)
    }

    // MARK: - Retired spans

    /// Exhaust many spans of every size class on one P: the spans it retires stay within
    /// MCache.maxRetiredPages (and maxRetired per class), and the heap stays consistent.
    func testRetiredSpansAreBoundedPerP() {
        runScenario(retiredSpansScenario, bug: "a P retired more than MCache.maxRetiredPages")
    }

    // MARK: - Lock ranks

    /// Debug builds stop at the first lock taken against the order (mheap, then an mcentral).
    func testLockOrderViolationIsFatalInDebugBuilds() throws {
        try XCTSkipUnless(internalChecksEnabled, "lock ranks are checked in debug builds only (GOMALLOC_INTERNAL_CHECKS)")
        GoAllocator.deallocate(GoAllocator.allocate(byteCount: 16, alignment: 8)!)
        let r = runInChild {
            let h = theHeap()!
            h.pointee.lock.lock()
            h.central(SpanClass(sizeClass: 1, noscan: false)).pointee.lock.lock()
            _exit(0)
        }
        XCTAssertEqual(r.signal, SIGABRT, r.stderr)
        XCTAssertEqual(r.stderr,
                       "gomalloc: fatal error: lock order: an mcentral lock taken while holding an mcentral or the heap lock\n")
    }
}

// MARK: - Scenarios (in a forked child)

/// SIGABRT handler of expectReportWithNothingHeld: 7 if the allocator is entirely released.
private func abortHandlerChecksNothingHeld(_ signal: Int32) {
    guard let h = theHeap() else { _exit(10) }
    var held = false
    for i in 0..<h.pointee.nprocs where h.proc(i).pointee.owner.load(ordering: .relaxed) != 0 { held = true }
    for c in 0..<numSpanClasses where h.central(SpanClass(raw: UInt8(c))).pointee.lock.state.load(ordering: .relaxed) != 0 {
        held = true
    }
    if h.pointee.lock.state.load(ordering: .relaxed) != 0 { held = true }
    _exit(held ? 8 : 7)
}

/// Exit status: 0 fine, 1 the all-free span stayed on the partial list, 3 cannot replay,
/// others: set-up failures.
private func trimRacingRemoteFreeScenario() -> Int32 {
    let h = theHeap()!
    // Two blocks that are the only objects of a fresh span of the 13568-byte class (3 per
    // span): allocate until one starts a span, then take the next.
    let size = 13_000
    var others: [UnsafeMutableRawPointer] = []
    var x: UnsafeMutableRawPointer
    while true {
        x = GoAllocator.allocate(byteCount: size, alignment: 8)!
        let s = h.spanOf(UInt(bitPattern: x))!
        if s.pointee.startAddr == UInt(bitPattern: x) && s.allocCount == 1 { break }
        others.append(x)
        if others.count > 64 { return scenarioFail(10, "no fresh span of the 13568-byte class") }
    }
    let y = GoAllocator.allocate(byteCount: size, alignment: 8)!
    GoAllocator.trim()  // the span goes to mcentral's partial list, allocCount 2
    guard let s = h.spanOf(UInt(bitPattern: x)), h.spanOf(UInt(bitPattern: y)) == s,
          s.pointee.location.load(ordering: .relaxed) == SpanLocation.partial, s.allocCount == 2 else {
        return scenarioFail(11, "x and y are not the two objects of one span on the partial list")
    }
    GoAllocator.deallocate(x)  // remote: one pending bit (1 < allocCount 2: no settle)

    // The trimming thread stops right after its sweep of s takes x's remoteBits word (x and
    // y share it: 3 objects a span).
    let wordAddress = UInt(bitPattern: s.remoteWord(s.objIndex(UInt(bitPattern: x)) >> 6))
    let (trimmer, status) = stallThread(watching: wordAddress) { GoAllocator.trim() }
    guard let trimmer else { return status }
    GoAllocator.deallocate(y)  // remote, sees location partial, the old allocCount 2, one bit
    trimmer.resume()

    if let v = GoAllocator.checkInvariants() {
        return scenarioFail(ScenarioStatus.bug, "\(v)")
    }
    if h.spanOf(UInt(bitPattern: x)) == s {
        return scenarioFail(ScenarioStatus.bug, "the span of x and y is still in use")
    }
    for p in others { GoAllocator.deallocate(p) }
    return ScenarioStatus.pass
}

/// Exit status: 0 fine, 1 too many retired pages on a P, others: set-up failures.
private func retiredSpansScenario() -> Int32 {
    let h = theHeap()!
    // One P throughout, found through the thread-local (a forked child: one thread).
    h.bindPsByCASOnly()
    var blocks: [UnsafeMutableRawPointer] = []
    // Spans of every class in turn, until twice the budget's pages were exhausted: each
    // exhausted span is retired by this P.
    var pagesUsed = 0
    while pagesUsed < 2 * MCache.maxRetiredPages {
        for c in 1..<numSizeClasses {
            let size = Int(h.pointee.sizeClasses.classToSize[c])
            let perSpan = Int(h.pointee.sizeClasses.classToNElems[c])
            for _ in 0..<perSpan { blocks.append(GoAllocator.allocate(byteCount: size, alignment: 8)!) }
            pagesUsed += Int(h.pointee.sizeClasses.classToNPages[c])
        }
    }
    guard let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p), let cache = slot.mcache else {
        return scenarioFail(10, "no P")
    }
    var pages = 0
    var spans = 0
    for spc in 0..<numSpanClasses {
        var r = cache.pointee.retired[spc].first
        while let t = r { pages += t.pointee.npages; spans += 1; r = t.pointee.next }
    }
    if spans == 0 { return scenarioFail(11, "nothing was retired") }
    if pages > MCache.maxRetiredPages {
        return scenarioFail(ScenarioStatus.bug, "\(pages) pages in \(spans) retired spans")
    }
    if let v = GoAllocator.checkInvariants() { return scenarioFail(12, "invariant: \(v)") }
    for p in blocks { GoAllocator.deallocate(p) }
    if let v = GoAllocator.checkInvariants() { return scenarioFail(13, "invariant after freeing: \(v)") }
    return ScenarioStatus.pass
}
