// Replay.swift — interleavings replayed exactly, with a hardware watchpoint.
//
// A race between two threads is replayed by stopping one of them right after a chosen
// write: a perf_event_open(2) write watchpoint on that address, for that thread only, sends
// it SIGTRAP just after the writing instruction (attr.sigtrap); the handler parks the thread
// until the test lets it go. Meanwhile the main thread does the other side of the race. The
// scenarios run in a forked child (runScenario): a bug may leave a corrupt heap behind.
//
// perf_event_open of a breakpoint needs perf_event_paranoid <= 2 (the default) and a
// kernel with attr.sigtrap (5.13+). Where it is refused the scenario cannot run, and the
// test FAILS saying so: CI must be able to replay these races.
import Foundation
import Synchronization
import XCTest
@testable import GoMalloc

/// Exit statuses of a scenario child: 0 pass, 1 the bug, 3 cannot replay here; others are
/// set-up failures (the child says what on stderr).
enum ScenarioStatus {
    static let pass: Int32 = 0
    static let bug: Int32 = 1
    static let cannotReplay: Int32 = 3
}

/// Write `message` to stderr (the parent shows it) and return `code` as the exit status.
func scenarioFail(_ code: Int32, _ message: String) -> Int32 {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    return code
}

/// Run `scenario` in a forked child and turn its exit status into a verdict: `bug` names
/// what status 1 means.
func runScenario(_ scenario: @escaping () -> Int32, bug: String, file: StaticString = #filePath, line: UInt = #line) {
    // Make sure the heap exists (and its fork handlers too) before forking.
    GoAllocator.deallocate(GoAllocator.allocate(byteCount: 16, alignment: 8)!)
    let r = runInChild { _exit(scenario()) }
    switch (r.signal, r.status) {
    case (0, ScenarioStatus.pass): break
    case (0, ScenarioStatus.cannotReplay):
        XCTFail("""
            cannot replay the interleaving here: \(r.stderr)\
            The replay needs a hardware write watchpoint from perf_event_open(2) (the kernel must \
            allow perf_event_open breakpoints for unprivileged users: /proc/sys/kernel/perf_event_paranoid \
            <= 2, and no seccomp filter refusing the call) and, for some, at least two Ps (two CPUs, or \
            GOMALLOC_MAXPROCS >= 2).
            """, file: file, line: line)
    case (0, ScenarioStatus.bug): XCTFail("\(bug): \(r.stderr)", file: file, line: line)
    default: XCTFail("scenario failed: signal \(r.signal), status \(r.status): \(r.stderr)", file: file, line: line)
    }
}

// MARK: - Stopping a thread after a write (only globals cross threads and the handler)

/// 0 idle, 1 armed, 2 stopped in the SIGTRAP handler, 3 released, 4 action returned,
/// -1 no watchpoint.
private let stallState = Atomic<Int>(0)
nonisolated(unsafe) private var stallPrepare: (() -> Void)?
nonisolated(unsafe) private var stallAction: (() -> Void)?
nonisolated(unsafe) private var stallAddress: UInt = 0
nonisolated(unsafe) private var stallLength: UInt64 = 8

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

private func stalledThreadBody(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    stallPrepare?()
    let fd = openWriteWatchpoint(stallAddress, length: stallLength)
    if fd < 0 {
        stallState.store(-1, ordering: .releasing)
        return nil
    }
    stallState.store(1, ordering: .releasing)
    stallAction?()
    close(Int32(fd))
    stallState.store(4, ordering: .releasing)
    return nil
}

/// A thread stopped right after its first write to the watched address.
struct StalledThread {
    fileprivate let thread: pthread_t

    /// Let it go on and wait until its action has returned.
    func resume() {
        stallState.store(3, ordering: .releasing)
        pthread_join(thread, nil)
    }

    /// Let it go on without waiting (it may block on something the caller still holds).
    func release() { stallState.store(3, ordering: .releasing) }

    func join() { pthread_join(thread, nil) }
}

/// Start a thread that runs `prepare` (unwatched: set-up such as choosing its P), then
/// `action` with a write watchpoint of `length` bytes (1, 2, 4 or 8) at `address`, and wait
/// until the watchpoint has stopped it. Returns the thread, or nil and an exit status
/// (ScenarioStatus.cannotReplay, or a set-up failure) with the reason written to stderr.
func stallThread(watching address: UInt, length: UInt64 = 8, preparing prepare: (() -> Void)? = nil,
                 running action: @escaping () -> Void) -> (StalledThread?, Int32) {
    stallPrepare = prepare
    stallAction = action
    stallAddress = address
    stallLength = length
    stallState.store(0, ordering: .releasing)
    var sa = sigaction()
    sa.__sigaction_handler.sa_handler = stallHandler
    sigemptyset(&sa.sa_mask)
    sigaction(SIGTRAP, &sa, nil)
    var thread = pthread_t()
    guard pthread_create(&thread, nil, stalledThreadBody, nil) == 0 else { return (nil, scenarioFail(13, "pthread_create")) }
    // Wait for the thread to stop, fail or finish: each of those is a store it makes.
    while true {
        let s = stallState.load(ordering: .acquiring)
        if s == 2 { return (StalledThread(thread: thread), 0) }
        if s == -1 {
            pthread_join(thread, nil)
            return (nil, scenarioFail(ScenarioStatus.cannotReplay, "perf_event_open refused a breakpoint"))
        }
        if s == 4 {
            pthread_join(thread, nil)
            return (nil, scenarioFail(14, "the watched address was never written: the scenario's set-up is wrong"))
        }
        sched_yield()
    }
}
