// StressTests.swift — the allocator core under stress and under deliberately stretched races.
//
// Kinds of test:
//   * the stress_*.c programs in Tests/CPrograms, compiled with `cc -O2 -pthread` and run
//     with the drop-in library preloaded (DropIn's helpers: the .so next to this bundle) with
//     several GOMALLOC_MAXPROCS settings: every byte checked, forks, heap back to its start;
//   * bad frees that a sweep could hide (stress_misuse.c): one line, then SIGABRT;
//   * the hosted core in this process: threads handing blocks around while the main thread
//     stops the world, checks every invariant and trims the heap;
//   * interleavings replayed exactly: a hardware watchpoint (perf_event_open) stops a thread
//     right after a write inside free(), in a SIGTRAP handler, while the main thread acts.
//
// Run time: about 15 s in a debug build. Longer runs for shaking races by hand (release .so):
//   stress_threads 8 60000 500   with GOMALLOC_MAXPROCS=1, 2 and 8
//   stress_remote 4 8 60000 50000 0   and   stress_remote 4 8 60000 50000 8
import Foundation
import Synchronization
import XCTest
import CGoMallocSys
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class StressTests: XCTestCase {
    /// The programs this file runs (DropInTests.testEveryProgramHasATest counts them too).
    static let programs: [String: String] = [
        "stress_threads.c": "testThreadsHandBlocksAround*",
        "stress_remote.c": "testProducersAndConsumers*",
        "stress_misuse.c": "testLateDoubleFree*, testFreeOfUnallocatedSlotAborts",
        "stress_cabi_edges.c": "testCABIEdgesAnswerAsGlibc",
    ]

    /// Compile `file` with -O2, run it under the allocator; it must exit 0 with `OK <name>`
    /// last and nothing on stderr.
    private func runStress(_ file: String, _ args: [String], maxProcs: Int, timeout: TimeInterval = 120,
                           file testFile: StaticString = #filePath, line: UInt = #line) throws {
        let allocator = try DropIn.allocator()
        let exe = try DropIn.compile(file, extraFlags: ["-O2"], tag: "O2")
        let env = DropIn.environment(for: allocator, ["GOMALLOC_MAXPROCS": String(maxProcs)])
        let r = try DropIn.run(exe, args, environment: env, timeout: timeout)
        let name = (file as NSString).deletingPathExtension
        let what = "\(file) \(args.joined(separator: " ")) with GOMALLOC_MAXPROCS=\(maxProcs)"
        XCTAssertTrue(r.exitedNormally && r.status == 0, "\(what): \(r.summary)", file: testFile, line: line)
        XCTAssertEqual(r.stdout.split(separator: "\n").last.map(String.init), "OK \(name)", "\(what): \(r.summary)",
                       file: testFile, line: line)
        XCTAssertEqual(r.stderr, "", "\(what) wrote to stderr: \(r.summary)", file: testFile, line: line)
    }

    // MARK: - Threads handing blocks around (every byte verified)

    func testThreadsHandBlocksAroundWithOneP() throws {
        try runStress("stress_threads.c", ["6", "1500"], maxProcs: 1)
    }

    func testThreadsHandBlocksAroundWithTwoPsAndForks() throws {
        try runStress("stress_threads.c", ["6", "2000", "250"], maxProcs: 2)
    }

    func testThreadsHandBlocksAroundWithEightPs() throws {
        try runStress("stress_threads.c", ["8", "1500"], maxProcs: 8)
    }

    // MARK: - Producers and consumers: remote frees racing span moves

    func testProducersAndConsumersWithPreemptionSignals() throws {
        try runStress("stress_remote.c", ["3", "5", "2000", "20000"], maxProcs: 2)
    }

    /// No long-lived blocks: spans empty out in their caches and go back to the heap.
    func testProducersAndConsumersEmptyingSpans() throws {
        try runStress("stress_remote.c", ["3", "5", "2000", "20000", "0"], maxProcs: 8)
    }

    // MARK: - The C ABI's corners (glibc 2.36 is the reference)

    /// calloc(0, SIZE_MAX), reallocarray(p, 0, SIZE_MAX), alignments of 2^63, mallopt.
    func testCABIEdgesAnswerAsGlibc() throws {
        try runStress("stress_cabi_edges.c", [], maxProcs: 1)
    }

    // MARK: - Bad frees a sweep could hide

    /// Run `stress_misuse MODE` with one P: it must die of SIGABRT after exactly
    /// `gomalloc: free(): <problem> <address it announced>`.
    private func expectAbort(mode: String, problem: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let library = try DropIn.requireLibrary("the misuse reports")
        let exe = try DropIn.compile("stress_misuse.c", extraFlags: ["-O2"], tag: "O2")
        let env = DropIn.environment(for: .gomalloc(library: library), ["GOMALLOC_MAXPROCS": "1"])
        let r = try DropIn.run(exe, [mode], environment: env, timeout: 60)
        XCTAssertFalse(r.exitedNormally && r.status == 4, "stress_misuse \(mode): unexpected layout: \(r.summary)",
                       file: file, line: line)
        XCTAssertTrue(r.signaled && r.status == SIGABRT, "stress_misuse \(mode): want SIGABRT, got \(r.summary)",
                      file: file, line: line)
        guard let addrLine = r.stdout.split(separator: "\n").first(where: { $0.hasPrefix("addr ") }) else {
            return XCTFail("stress_misuse \(mode) printed no address: \(r.summary)", file: file, line: line)
        }
        let address = addrLine.dropFirst("addr ".count)
        XCTAssertEqual(r.stderr, "gomalloc: free(): \(problem) \(address)\n", "stress_misuse \(mode)", file: file, line: line)
    }

    /// The second free of a block whose first free a sweep has merged, in the span this P
    /// allocates from: left alone, the slot is handed out again and the stale free bit then
    /// frees the new owner's block at the next sweep.
    func testLateDoubleFreeInOwnSpanAborts() throws {
        try expectAbort(mode: "late-double-free", problem: "double free")
    }

    /// The start of a slot that was never handed out, in the span this P allocates from
    /// (reported as a double free: the slot's bits cannot tell the two apart).
    func testFreeOfUnallocatedSlotAborts() throws {
        try expectAbort(mode: "free-unallocated-slot", problem: "double free")
    }

    func testLateDoubleFreeInCentralSpanAborts() throws {
        try expectAbort(mode: "remote-late-double-free", problem: "double free")
    }

    // MARK: - In process: the stopped world while threads hand blocks around

    /// Threads allocate (sizes 1 B to 64 KiB), hand blocks to each other through locked
    /// queues and free them, while the main thread repeatedly stops the world and walks the
    /// heap, and trims it (flushing every mcache under the threads' feet). At the end the
    /// heap holds exactly what it held before. No worker gets past its halfway round before
    /// the main thread has checked the heap four times and trimmed it once (a handshake), so
    /// the checks cannot all fall after the work however the threads are scheduled.
    func testThreadsWhileTheWorldIsStoppedAndTrimmed() {
        let start = GoAllocator.statistics().heapAlloc
        let threads = 6
        let rounds = 40_000
        let queues = (0..<threads).map { _ in AddressQueue() }
        let checksDone = ProgressGate()
        stressThreadsDone.store(0, ordering: .relaxed)
        let group = DispatchGroup()
        for me in 0..<threads {
            group.enter()
            let t = Thread {
                var rng = SplitMix64(seed: UInt64(me) &* 0x9E37_79B9 &+ 17)
                var mine: [(UInt, Int)] = []
                for round in 0..<rounds {
                    if round == rounds / 2 { checksDone.wait(atLeast: 4) }
                    let r = rng.next()
                    // Small, or now and then large (32 KiB to 64 KiB: the size fits the entry).
                    let size = r % 64 == 0 ? 32_769 + Int((r >> 8) % 32_000) : Int((r >> 8) % 700) + 1
                    let p = GoAllocator.allocate(byteCount: size, alignment: 8)!
                    p.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: size), count: size)
                    // Size in the queue entry's high bits: address | size << 48.
                    let entry = UInt(bitPattern: p) | (UInt(size) << 48)
                    if round % 3 == 0 { mine.append((UInt(bitPattern: p), size)) }
                    else { queues[(me + 1 + round % (threads - 1)) % threads].push(entry) }
                    if mine.count > 64 {
                        let (a, n) = mine.remove(at: Int(r >> 40) % mine.count)
                        StressTests.checkAndFree(a, n)
                    }
                    while let e = queues[me].pop() {
                        StressTests.checkAndFree(e & ((1 << 48) - 1), Int(e >> 48))
                    }
                }
                for (a, n) in mine { StressTests.checkAndFree(a, n) }
                stressThreadsDone.add(1, ordering: .releasing)
                group.leave()
            }
            t.stackSize = 1 << 20
            t.start()
        }
        var checks = 0
        while stressThreadsDone.load(ordering: .acquiring) < threads {
            if let v = GoAllocator.checkInvariants() {
                XCTFail("heap invariant violated while threads run: \(v)")
                checksDone.open()
                break
            }
            if checks % 4 == 3 { GoAllocator.trim() }
            checks += 1
            checksDone.advance()
            usleep(20_000)  // pacing only: the handshake above guarantees the overlap
        }
        group.wait()
        for q in queues { for e in q.drain() { StressTests.checkAndFree(e & ((1 << 48) - 1), Int(e >> 48)) } }
        assertHeapInvariants()
        XCTAssertEqual(GoAllocator.statistics().heapAlloc, start)
    }

    private static func checkAndFree(_ address: UInt, _ size: Int) {
        let p = UnsafeMutableRawPointer(bitPattern: address)!
        let b = p.assumingMemoryBound(to: UInt8.self)
        let want = UInt8(truncatingIfNeeded: size)
        precondition(b[0] == want && b[size / 2] == want && b[size - 1] == want, "block corrupted or handed out twice")
        GoAllocator.deallocate(p)
    }

    // MARK: - Interleavings replayed with a hardware watchpoint

    /// Run `scenario` in a forked child (a failure may leave a corrupt heap behind) and map
    /// its exit status: 0 pass, 1 the bug (`bug` says what), 3 cannot replay here — a
    /// failure too, not a skip: CI must run these replays.
    private func replay(_ scenario: @escaping () -> Int32, bug: String, file: StaticString = #filePath, line: UInt = #line) throws {
        // Make sure the heap exists (and its fork handlers too) before forking.
        GoAllocator.deallocate(GoAllocator.allocate(byteCount: 16, alignment: 8)!)
        let r = runInChild { _exit(scenario()) }
        switch (r.signal, r.status) {
        case (0, 0): break
        case (0, 3):
            XCTFail("""
                cannot replay the interleaving here: \(r.stderr)\
                The replay needs a hardware write watchpoint from perf_event_open(2) (the kernel must \
                allow perf_event_open breakpoints for unprivileged users: /proc/sys/kernel/perf_event_paranoid \
                <= 2, and no seccomp filter refusing the call) and at least two Ps (two CPUs, or GOMALLOC_MAXPROCS >= 2).
                """, file: file, line: line)
        case (0, 1): XCTFail("\(bug): \(r.stderr)", file: file, line: line)
        default: XCTFail("scenario failed: signal \(r.signal), status \(r.status): \(r.stderr)", file: file, line: line)
        }
    }

    /// A remote free sets the object's bit in remoteBits, then counts it in remoteFreeCount.
    /// If a sweep merges the bit in between and finds the span empty, the span must not go
    /// back to the heap yet: the freer's count would then land in freed metadata — in
    /// whatever span reuses it next, as a free that never happened. That span's settle then
    /// returns it to the heap while a block in it is still live.
    ///
    /// Replayed: the watchpoint on the remoteBits word stops the freeing thread (on another
    /// P) right after its write, while the main thread pushes the span out of its P's retired
    /// list (uncacheSpan sweeps it) and allocates.
    func testRemoteFreeStalledAfterItsBitKeepsTheSpanUntilItIsCounted() throws {
        try replay(stalledRemoteFreeScenario,
                   bug: "a span was given back to the heap with a live block (count of a stale remote free)")
    }

    /// The stopped world (checkInvariants, fork) takes every P: it must not stop in the
    /// middle of a remote free — counted in its P's nfree, bit set in remoteBits, not yet in
    /// remoteFreeCount. Replayed: the freer stopped after its bit must still hold its P, so
    /// the checker waits for it and then finds everything consistent.
    func testStoppedWorldWaitsForARemoteFreeInFlight() throws {
        try replay({ stoppedWorldScenario(large: false) }, bug: "the world stopped in the middle of a remote free")
    }

    /// The same for a large block: free() marks its span free (a CAS, which catches a racing
    /// second free), then gives its pages back under the heap lock. A stopped world must not
    /// see the span marked free while it still owns its pages.
    func testStoppedWorldWaitsForALargeFreeInFlight() throws {
        try replay({ stoppedWorldScenario(large: true) }, bug: "the world stopped in the middle of a large free")
    }
}

/// Workers of testThreadsWhileTheWorldIsStoppedAndTrimmed that have finished.
private let stressThreadsDone = Atomic<Int>(0)

// MARK: - Replay machinery (in a forked child; only globals cross threads and the handler)

/// 0 idle, 1 armed, 2 stopped in the SIGTRAP handler, 3 released, 4 free returned, -1 no watchpoint.
private let stallState = Atomic<Int>(0)
/// What the stopped thread frees: `stallOthers` first (unwatched), then `stallTarget`, with
/// a write watchpoint of `stallWatchLength` bytes at `stallWatchAddress`; on P `stallFreerP`
/// (its address) if not 0.
nonisolated(unsafe) private var stallTarget: UnsafeMutableRawPointer?
nonisolated(unsafe) private var stallOthers: [UnsafeMutableRawPointer] = []
nonisolated(unsafe) private var stallWatchAddress: UInt = 0
nonisolated(unsafe) private var stallWatchLength: UInt64 = 8
nonisolated(unsafe) private var stallFreerP: UInt = 0

private func stallHandler(_ signal: Int32) {
    if stallState.load(ordering: .acquiring) == 1 {
        stallState.store(2, ordering: .releasing)
        while stallState.load(ordering: .acquiring) == 2 { sched_yield() }
    }
}

/// perf_event_open(2) of a write watchpoint on `address` for this thread that sends the
/// thread SIGTRAP right after the writing instruction (attr.sigtrap). -1 if unavailable.
private func openWriteWatchpoint(_ address: UInt, length: UInt64) -> Int {
    // struct perf_event_attr (PERF_ATTR_SIZE_VER7, 128 bytes) as little-endian words.
    var attr = [UInt64](repeating: 0, count: 16)
    attr[0] = 5 | 128 << 32                        // type PERF_TYPE_BREAKPOINT, size 128
    attr[2] = 1                                    // sample_period
    attr[5] = 1 << 5 | 1 << 6 | 1 << 36 | 1 << 37  // exclude_kernel, exclude_hv, remove_on_exec, sigtrap
    attr[6] = 2 << 32                              // bp_type HW_BREAKPOINT_W
    attr[7] = UInt64(address)                      // bp_addr
    attr[8] = length                               // bp_len: 1, 2, 4 or 8
    #if arch(x86_64)
    let nr = 298
    #elseif arch(arm64)
    let nr = 241
    #else
    return -1
    #endif
    // syscall(2) is variadic, which Swift does not import: call it through a fixed prototype.
    guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "syscall") else { return -1 }
    typealias Syscall = @convention(c) (Int, UnsafeRawPointer, Int, Int, Int, Int) -> Int
    let syscall6 = unsafeBitCast(sym, to: Syscall.self)
    return attr.withUnsafeBytes { syscall6(nr, $0.baseAddress!, 0, -1, -1, 0) }
}

private func stalledFreer(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    if stallFreerP != 0 { gm_tls_preferred_p = stallFreerP }
    for p in stallOthers { GoAllocator.deallocate(p) }
    let fd = openWriteWatchpoint(stallWatchAddress, length: stallWatchLength)
    if fd < 0 {
        stallState.store(-1, ordering: .releasing)
        return nil
    }
    stallState.store(1, ordering: .releasing)
    GoAllocator.deallocate(stallTarget!)
    close(Int32(fd))
    stallState.store(4, ordering: .releasing)
    return nil
}

/// Write `message` to stderr (the parent shows it) and return `code` as the exit status.
private func scenarioFail(_ code: Int32, _ message: String) -> Int32 {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    return code
}

/// Start the freer and wait until the watchpoint has stopped it. Returns the thread, or
/// nil and an exit status (3: cannot replay here).
private func startStalledFreer() -> (pthread_t?, Int32) {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = stallHandler
    sigemptyset(&action.sa_mask)
    sigaction(SIGTRAP, &action, nil)
    var thread = pthread_t()
    guard pthread_create(&thread, nil, stalledFreer, nil) == 0 else { return (nil, scenarioFail(13, "pthread_create")) }
    var waited = 0
    while stallState.load(ordering: .acquiring) < 2 && stallState.load(ordering: .acquiring) >= 0 && waited < 10_000 {
        usleep(1000)
        waited += 1
    }
    switch stallState.load(ordering: .acquiring) {
    case 2: return (thread, 0)
    case -1: pthread_join(thread, nil); return (nil, scenarioFail(3, "perf_event_open refused a breakpoint"))
    case 4: pthread_join(thread, nil); return (nil, scenarioFail(3, "the watchpoint never fired"))
    default: return (nil, scenarioFail(14, "the freer neither stopped nor finished"))
    }
}

/// Exit status: 0 fine, 1 the span of a live block went back to the heap, 3 cannot replay
/// here (no watchpoint, one P), other values: the set-up did not go as planned (stderr).
private func stalledRemoteFreeScenario() -> Int32 {
    let h = theHeap()!
    func span(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<MSpan>? { h.pointee.spanOf(UInt(bitPattern: p)) }
    if h.pointee.nprocs < 2 { return scenarioFail(3, "needs two Ps") }
    GoAllocator.trim()

    // Twenty spans of the 3072-byte class (8 objects each) in a row from this thread's P:
    // each one exhausted is retired, so the P's retired list ends with the oldest of the last
    // eight, s, whose objects are all ours.
    var blocks: [UnsafeMutableRawPointer] = []
    for _ in 0..<160 { blocks.append(GoAllocator.allocate(byteCount: 3072, alignment: 8)!) }
    guard let mine = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p), let cache = mine.pointee.mcache else {
        return scenarioFail(10, "no P")
    }
    let spc = span(blocks[0])!.pointee.spanClass
    guard Int(cache.pointee.retiredCount[spc.index]) == MCache.maxRetired, var s = cache.pointee.retired[spc.index] else {
        return scenarioFail(11, "retired list not full")
    }
    while let n = s.pointee.next { s = n }
    let inS = blocks.filter { span($0) == s }
    guard inS.count == s.pointee.nelems, s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(mine) else {
        return scenarioFail(12, "oldest retired span not made of our blocks")
    }
    // Another thread, on the other P, frees all of s; the last free stops after its bit.
    stallOthers = Array(inS.dropLast())
    stallTarget = inS.last!
    stallFreerP = UInt(bitPattern: h.pointee.proc((mine.pointee.index + 1) % h.pointee.nprocs))
    stallWatchAddress = UInt(bitPattern: s.pointee.remoteWord(s.pointee.objIndex(UInt(bitPattern: stallTarget!)) >> 6))
    let (freer, status) = startStalledFreer()
    guard let freer else { return status }

    // While it is stopped: run the current span out, so that refill retires it and pushes s
    // out of the retired list: uncacheSpan sweeps s, merging the stopped free...
    func sIsRetired() -> Bool {
        var r = cache.pointee.retired[spc.index]
        while let t = r { if t == s { return true }; r = t.pointee.next }
        return false
    }
    var more: [UnsafeMutableRawPointer] = []
    for _ in 0..<9 where sIsRetired() { more.append(GoAllocator.allocate(byteCount: 3072, alignment: 8)!) }
    if sIsRetired() { return scenarioFail(15, "s was not pushed out of the retired list") }
    // ...and new spans take span metadata (of the 3072-byte class, or of one 32 KiB object
    // each): if s's was freed, one of them reuses it.
    for _ in 0..<64 {
        let p = GoAllocator.allocate(byteCount: 32768, alignment: 8)!
        more.append(p)
        if span(p) == s { break }
    }
    // Let the freer count its free and finish.
    stallState.store(3, ordering: .releasing)
    pthread_join(freer, nil)

    // Flush every cache to mcentral: a span with a stale count looks emptier than it is,
    // and goes to the heap with live blocks.
    GoAllocator.trim()
    for p in more where span(p)?.pointee.state.load(ordering: .relaxed) != SpanState.inUse.rawValue {
        return scenarioFail(1, "the span of live block \(p) was given back to the heap")
    }
    if let v = GoAllocator.checkInvariants() { return scenarioFail(17, "invariant: \(v)") }
    for p in blocks where !inS.contains(p) { GoAllocator.deallocate(p) }
    for p in more { GoAllocator.deallocate(p) }
    if let v = GoAllocator.checkInvariants() { return scenarioFail(18, "invariant after freeing: \(v)") }
    return 0
}

/// checkInvariants() on a thread of its own: 0 running, 1 found nothing, 2 found a violation.
private let checkerResult = Atomic<Int>(0)

private func checkerThread(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    if let v = GoAllocator.checkInvariants() {
        _ = scenarioFail(0, "checkInvariants: \(v)")
        checkerResult.store(2, ordering: .releasing)
    } else {
        checkerResult.store(1, ordering: .releasing)
    }
    return nil
}

/// Exit status: 0 fine, 1 the checker ran while a free was half done, 3 cannot replay
/// here, others: set-up failures (stderr). `large`: a large block (the watchpoint on its
/// span's state), else a small block in a span on mcentral's partial list (a remote free;
/// the watchpoint on its remoteBits word).
private func stoppedWorldScenario(large: Bool) -> Int32 {
    let h = theHeap()!
    var keep: UnsafeMutableRawPointer?
    if large {
        let x = GoAllocator.allocate(byteCount: 100_000, alignment: 8)!
        guard let s = h.pointee.spanOf(UInt(bitPattern: x)) else { return scenarioFail(10, "no span") }
        stallTarget = x
        stallWatchAddress = withUnsafePointer(to: s.pointee.state) { UInt(bitPattern: $0) }
        stallWatchLength = 4
    } else {
        // Two blocks of one span on mcentral's partial list: a free of either is remote.
        let x = GoAllocator.allocate(byteCount: 3072, alignment: 8)!
        let x2 = GoAllocator.allocate(byteCount: 3072, alignment: 8)!
        GoAllocator.trim()
        guard let s = h.pointee.spanOf(UInt(bitPattern: x)), h.pointee.spanOf(UInt(bitPattern: x2)) == s,
              s.pointee.location.load(ordering: .relaxed) == SpanLocation.partial else {
            return scenarioFail(10, "blocks not in one span on the partial list")
        }
        keep = x2
        stallTarget = x
        stallWatchAddress = UInt(bitPattern: s.pointee.remoteWord(s.pointee.objIndex(UInt(bitPattern: x)) >> 6))
    }
    let (freer, status) = startStalledFreer()
    guard let freer else { return status }
    // Stop the world from another thread while the free is stopped half way.
    var checker = pthread_t()
    guard pthread_create(&checker, nil, checkerThread, nil) == 0 else { return scenarioFail(13, "pthread_create") }
    usleep(300_000)
    let during = checkerResult.load(ordering: .acquiring)
    stallState.store(3, ordering: .releasing)
    pthread_join(freer, nil)
    pthread_join(checker, nil)
    if during != 0 { return scenarioFail(1, "checkInvariants ran while the free was half done") }
    if checkerResult.load(ordering: .acquiring) != 1 { return scenarioFail(15, "checkInvariants found a violation") }
    if let keep { GoAllocator.deallocate(keep) }
    if let v = GoAllocator.checkInvariants() { return scenarioFail(16, "invariant: \(v)") }
    return 0
}
