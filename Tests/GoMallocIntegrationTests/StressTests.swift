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
        "stress_cpus.c": "testThreadsOutnumberingCPUs*, testThreadsRestrictedToOneCPU*, testThreadsMigrating*",
        "rseq_probe.c": "testPsAreBoundToCPUsWhereverRseqWorks, testUnderValgrindPsFallBackToCompareAndSwap",
    ]

    /// Compile `file` with -O2, run it under the allocator; it must exit 0 with `OK <name>`
    /// last and nothing on stderr.
    private func runStress(_ file: String, _ args: [String], maxProcs: Int, timeout: TimeInterval = 120,
                           env extra: [String: String] = [:],
                           file testFile: StaticString = #filePath, line: UInt = #line) throws {
        let allocator = try DropIn.allocator()
        let exe = try DropIn.compile(file, extraFlags: ["-O2"], tag: "O2")
        let env = DropIn.environment(for: allocator, extra.merging(["GOMALLOC_MAXPROCS": String(maxProcs)]) { a, _ in a })
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

    /// The same with the tiny allocator on (GOMALLOC_TINY=1): 1-4-byte blocks are packed and
    /// freed from other threads, with forks.
    func testThreadsHandBlocksAroundWithTinyPacking() throws {
        try runStress("stress_threads.c", ["6", "2000", "250"], maxProcs: 2, env: ["GOMALLOC_TINY": "1"])
    }

    // MARK: - Producers and consumers: remote frees racing span moves

    func testProducersAndConsumersWithPreemptionSignals() throws {
        try runStress("stress_remote.c", ["3", "5", "2000", "20000"], maxProcs: 2)
    }

    /// No long-lived blocks: spans empty out in their caches and go back to the heap.
    func testProducersAndConsumersEmptyingSpans() throws {
        try runStress("stress_remote.c", ["3", "5", "2000", "20000", "0"], maxProcs: 8)
    }

    // MARK: - Ps bound to CPUs (rseq) and the compare-and-swap fallback
    //
    // The whole suite runs twice (.ci/run): as the machine allows (rseq where it works) and
    // with GOMALLOC_RSEQ=0. These tests stretch what the binding must survive.

    /// 16 threads on 2 CPUs (or however many): preempted holders of a CPU's P, a signal
    /// storm aborting critical sections, a third of the frees on another thread.
    func testThreadsOutnumberingCPUsUnderASignalStorm() throws {
        try runStress("stress_cpus.c", ["16", "1500", "20000", "all"], maxProcs: 2)
    }

    /// Every thread on one CPU (sched_setaffinity): they all want the same P.
    func testThreadsRestrictedToOneCPUShareItsPAndTheFallback() throws {
        try runStress("stress_cpus.c", ["8", "1000", "5000", "one"], maxProcs: 1)
    }

    /// Threads move themselves between CPUs all the time (and so between Ps).
    func testThreadsMigratingBetweenCPUs() throws {
        try runStress("stress_cpus.c", ["8", "1000", "5000", "migrate"], maxProcs: 2)
    }

    /// What the binding should be, from the probe's own view of glibc and the kernel, and
    /// what the library reports (GOMALLOC_STATS: `CPUPs`, `Ps`).
    private func binding(under wrapper: [String], library: String) throws -> (expected: Int, cpuPs: Int, ps: Int) {
        let exe = try DropIn.compile("rseq_probe.c")
        let env = DropIn.environment(for: .gomalloc(library: library), ["GOMALLOC_STATS": "1"])
        let r = try DropIn.run(wrapper.first ?? exe, wrapper.isEmpty ? [] : Array(wrapper.dropFirst()) + [exe],
                               environment: env, timeout: 300)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stdout.split(separator: "\n").last, "OK rseq_probe", r.summary)
        func field(_ text: String, _ name: String, _ separator: String) -> Int? {
            for line in text.split(separator: "\n") {
                for item in line.split(separator: " ") where item.hasPrefix(name + separator) {
                    return Int(item.dropFirst(name.count + separator.count))
                }
            }
            return nil
        }
        func stat(_ name: String) -> Int? {
            r.stderr.split(separator: "\n").first { $0.hasPrefix(name + ": ") }.flatMap { Int($0.dropFirst(name.count + 2)) }
        }
        let rseqSize = try XCTUnwrap(field(r.stdout, "rseq_size", "="), r.summary)
        let barrier = try XCTUnwrap(field(r.stdout, "membarrier_rseq", "="), r.summary)
        let cpus = try XCTUnwrap(field(r.stdout, "cpus_configured", "="), r.summary)
        let enabled = ProcessInfo.processInfo.environment["GOMALLOC_RSEQ"] != "0"
        let expected = enabled && rseqSize >= 20 && barrier == 1 ? min(cpus, 256) : 0
        return (expected, try XCTUnwrap(stat("CPUPs"), r.summary), try XCTUnwrap(stat("Ps"), r.summary))
    }

    /// One P per CPU id exactly when glibc registered rseq and the kernel has membarrier's
    /// rseq flavour (and GOMALLOC_RSEQ is not 0); the fallback Ps behind them either way.
    func testPsAreBoundToCPUsWhereverRseqWorks() throws {
        let library = try DropIn.requireLibrary("the P binding")
        let b = try binding(under: [], library: library)
        XCTAssertEqual(b.cpuPs, b.expected)
        XCTAssertGreaterThan(b.ps, b.cpuPs, "fallback Ps behind the CPU Ps")
    }

    /// valgrind has no rseq (glibc registers none under it): Ps fall back to
    /// compare-and-swap, and the program runs as before.
    func testUnderValgrindPsFallBackToCompareAndSwap() throws {
        let library = try DropIn.requireLibrary("the P binding under valgrind")
        let valgrind = try DropIn.tool("valgrind", package: "valgrind")
        let objcopy = try DropIn.tool("objcopy", package: "binutils")
        // valgrind cannot read the Swift toolchain's debug information: a stripped copy.
        let stripped = DropIn.workDir.appendingPathComponent("libgomalloc-stripped.so").path
        let s = try DropIn.run(objcopy, ["--strip-debug", library, stripped], environment: [:])
        XCTAssertTrue(s.exitedNormally && s.status == 0, s.summary)
        let b = try binding(under: [valgrind, "-q", "--tool=none"], library: stripped)
        XCTAssertEqual(b.expected, 0, "glibc registered rseq under valgrind?")
        XCTAssertEqual(b.cpuPs, 0)
        XCTAssertGreaterThan(b.ps, 0)
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
        // Trimmed first: the Ps' open tiny blocks (C-ABI tests before this one) are closed by
        // the trims below, which would otherwise change the figure.
        _ = GoAllocator.trim()
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

    // MARK: - Interleavings replayed with a hardware watchpoint (Replay.swift)

    /// A remote free sets the object's bit in remoteBits (its only write), then looks at the
    /// span's location. If a sweep merges the bit in between and finds the span empty, the
    /// span goes back to the heap and its metadata may be reused before the freer looks: the
    /// freer must then leave the new span alone (an earlier design counted the free after
    /// its bit, and that count landed in the reused span as a free that never happened, whose
    /// settle returned it to the heap with a live block).
    ///
    /// Replayed: the watchpoint on the remoteBits word stops the freeing thread (on another
    /// P) right after its write, while the main thread pushes the span out of its P's retired
    /// list (uncacheSpan sweeps it) and allocates.
    func testRemoteFreeStalledAfterItsBitLeavesAReusedSpanAlone() {
        runScenario(stalledRemoteFreeScenario,
                    bug: "a span was given back to the heap with a live block (a stale remote free acted on it)")
    }

    /// The stopped world (checkInvariants, fork) takes every P: it must not stop in the
    /// middle of a remote free — bit set in remoteBits, not yet counted in its P's frees.
    /// Replayed: the freer stopped after its bit must still hold its P, so
    /// the checker waits for it and then finds everything consistent.
    func testStoppedWorldWaitsForARemoteFreeInFlight() {
        runScenario({ stoppedWorldScenario(large: false) }, bug: "the world stopped in the middle of a remote free")
    }

    /// The same for a large block: free() marks its span free (a CAS, which catches a racing
    /// second free), then gives its pages back under the heap lock. A stopped world must not
    /// see the span marked free while it still owns its pages.
    func testStoppedWorldWaitsForALargeFreeInFlight() {
        runScenario({ stoppedWorldScenario(large: true) }, bug: "the world stopped in the middle of a large free")
    }
}

/// Workers of testThreadsWhileTheWorldIsStoppedAndTrimmed that have finished.
private let stressThreadsDone = Atomic<Int>(0)

// MARK: - Replayed scenarios (in a forked child)

/// Exit status: 0 fine, 1 the span of a live block went back to the heap, 3 cannot replay
/// here (no watchpoint, one P), other values: the set-up did not go as planned (stderr).
private func stalledRemoteFreeScenario() -> Int32 {
    let h = theHeap()!
    func span(_ p: UnsafeMutableRawPointer) -> UnsafeMutablePointer<MSpan>? { h.spanOf(UInt(bitPattern: p)) }
    if h.pointee.nprocs < 2 { return scenarioFail(3, "needs two Ps") }
    // Ps chosen through the thread-local (a forked child: one thread so far).
    h.bindPsByCASOnly()
    GoAllocator.trim()

    // maxRetired + 12 spans of the 3072-byte class (8 objects each) in a row from this
    // thread's P: each one exhausted is retired, so the P's retired list starts with the
    // oldest of the last maxRetired, s, whose objects are all ours.
    var blocks: [UnsafeMutableRawPointer] = []
    for _ in 0..<((MCache.maxRetired + 12) * 8) { blocks.append(GoAllocator.allocate(byteCount: 3072, alignment: 8)!) }
    guard let mine = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p), let cache = mine.mcache else {
        return scenarioFail(10, "no P")
    }
    let spc = span(blocks[0])!.spanClass
    guard cache.pointee.retired[spc.index].count == MCache.maxRetired, let s = cache.pointee.retired[spc.index].first else {
        return scenarioFail(11, "retired list not full")
    }
    let inS = blocks.filter { span($0) == s }
    guard inS.count == s.nelems, s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(mine) else {
        return scenarioFail(12, "oldest retired span not made of our blocks")
    }
    // Another thread, on the other P, frees all of s; the last free stops after its bit.
    let others = Array(inS.dropLast())
    let target = inS.last!
    let otherP = UInt(bitPattern: h.proc((mine.pointee.index + 1) % h.pointee.nprocs))
    let watch = UInt(bitPattern: s.remoteWord(s.objIndex(UInt(bitPattern: target)) >> 6))
    let (freer, status) = stallThread(watching: watch, preparing: {
        gm_tls_preferred_p = otherP
        for p in others { GoAllocator.deallocate(p) }
    }, running: { GoAllocator.deallocate(target) })
    guard let freer else { return status }

    // While it is stopped: run the current span out, so that refill retires it and pushes s
    // out of the retired list: uncacheSpan sweeps s, merging the stopped free...
    func sIsRetired() -> Bool {
        var r = cache.pointee.retired[spc.index].first
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
    // Let the freer look at the span and finish.
    freer.resume()

    // Flush every cache to mcentral: a span a stale freer acted on would go to the heap
    // with live blocks.
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

/// Exit status: 0 fine, 1 the free stopped half way did not hold its P (a stopped world
/// could run in the middle of it), 3 cannot replay here, others: set-up failures (stderr).
/// `large`: a large block (the watchpoint on its span's state), else a small block in a span
/// on mcentral's partial list (a remote free; the watchpoint on its remoteBits word).
private func stoppedWorldScenario(large: Bool) -> Int32 {
    let h = theHeap()!
    // The freer's P is chosen through the thread-local (a forked child: one thread so far).
    h.bindPsByCASOnly()
    var keep: UnsafeMutableRawPointer?
    let target: UnsafeMutableRawPointer
    let watch: UInt
    var length: UInt64 = 8
    if large {
        target = GoAllocator.allocate(byteCount: 100_000, alignment: 8)!
        guard let s = h.spanOf(UInt(bitPattern: target)) else { return scenarioFail(10, "no span") }
        watch = withUnsafePointer(to: s.pointee.state) { UInt(bitPattern: $0) }
        length = UInt64(MemoryLayout.size(ofValue: SpanState.inUse.rawValue))  // the state word
    } else {
        // Two blocks of one span on mcentral's partial list: a free of either is remote.
        let x = GoAllocator.allocate(byteCount: 3072, alignment: 8)!
        let x2 = GoAllocator.allocate(byteCount: 3072, alignment: 8)!
        GoAllocator.trim()
        guard let s = h.spanOf(UInt(bitPattern: x)), h.spanOf(UInt(bitPattern: x2)) == s,
              s.pointee.location.load(ordering: .relaxed) == SpanLocation.partial else {
            return scenarioFail(10, "blocks not in one span on the partial list")
        }
        keep = x2
        target = x
        watch = UInt(bitPattern: s.remoteWord(s.objIndex(UInt(bitPattern: x)) >> 6))
    }
    // The freer works on the last P, so that a stopped world takes every other P first.
    let last = h.pointee.nprocs - 1
    let lastP = UInt(bitPattern: h.proc(last))
    let (freer, status) = stallThread(watching: watch, length: length,
                                      preparing: { gm_tls_preferred_p = lastP },
                                      running: { GoAllocator.deallocate(target) })
    guard let freer else { return status }
    // Half way through the free: it must hold its P, which a stopped world needs.
    if h.proc(last).pointee.owner.load(ordering: .acquiring) == 0 {
        freer.resume()
        return scenarioFail(1, "the free stopped half way holds no P")
    }
    // Stop the world from another thread: it takes every other P and then waits for the
    // freer's, so it cannot have finished.
    var checker = pthread_t()
    guard pthread_create(&checker, nil, checkerThread, nil) == 0 else { return scenarioFail(13, "pthread_create") }
    for i in 0..<last { while h.proc(i).pointee.owner.load(ordering: .acquiring) == 0 { sched_yield() } }
    let during = checkerResult.load(ordering: .acquiring)
    freer.resume()
    pthread_join(checker, nil)
    if during != 0 { return scenarioFail(1, "checkInvariants ran while the free was half done") }
    if checkerResult.load(ordering: .acquiring) != 1 { return scenarioFail(15, "checkInvariants found a violation") }
    if let keep { GoAllocator.deallocate(keep) }
    if let v = GoAllocator.checkInvariants() { return scenarioFail(16, "invariant: \(v)") }
    return 0
}
