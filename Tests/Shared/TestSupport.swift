// Shared helpers for the GoMalloc tests. One file, symlinked into both test targets
// (Tests/GoMallocUnitTests and Tests/GoMallocIntegrationTests): keep it small and free of
// anything only one target needs.
import Foundation
import XCTest
@testable import GoMalloc

/// A small deterministic PRNG (SplitMix64) so that failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func inRange(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.count) }
}

/// Directory holding the built products (the test bundle sits next to them).
func productsDirectory() -> URL {
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        return bundle.bundleURL.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
}

func assertHeapInvariants(file: StaticString = #filePath, line: UInt = #line) {
    if let violation = GoAllocator.checkInvariants() {
        XCTFail("heap invariant violated: \(violation)", file: file, line: line)
    }
}

/// Run `body` in a forked child with stderr captured; returns (terminating signal or 0,
/// exit status, stderr text).
func runInChild(_ body: () -> Void) -> (signal: Int32, status: Int32, stderr: String) {
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0)
    let pid = fork()
    if pid == 0 {
        close(fds[0])
        dup2(fds[1], 2)
        // The Swift runtime's crash backtracer would add its report after ours.
        signal(SIGABRT, SIG_DFL)
        signal(SIGSEGV, SIG_DFL)
        body()
        _exit(0)
    }
    close(fds[1])
    var data = Data()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fds[0], &buf, buf.count)
        if n <= 0 { break }
        data.append(buf, count: n)
    }
    close(fds[0])
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let signaled = (status & 0x7f) != 0 && (status & 0x7f) != 0x7f
    return (signaled ? status & 0x7f : 0, (status >> 8) & 0xff, String(decoding: data, as: UTF8.self))
}

/// A tiny locked queue of addresses (Foundation's NSLock; the test process uses glibc malloc).
final class AddressQueue: @unchecked Sendable {
    private var items: [UInt] = []
    private let lock = NSLock()
    func push(_ x: UInt) { lock.lock(); items.append(x); lock.unlock() }
    func pop() -> UInt? { lock.lock(); defer { lock.unlock() }; return items.popLast() }
    func drain() -> [UInt] { lock.lock(); defer { lock.unlock() }; let a = items; items = []; return a }
}

func runThreads(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    var threads: [Thread] = []
    for i in 0..<n {
        group.enter()
        let t = Thread { body(i); group.leave() }
        t.stackSize = 1 << 20
        threads.append(t)
    }
    for t in threads { t.start() }
    group.wait()
}

/// A count that threads wait on: `advance()` adds one and wakes the waiters, `wait(atLeast:)`
/// blocks until the count reaches n (a handshake, not a sleep). `open()` lets every waiter
/// through (a failing test must not leave its threads blocked).
final class ProgressGate: @unchecked Sendable {
    private let condition = NSCondition()
    private var count = 0
    func advance() { condition.lock(); count += 1; condition.broadcast(); condition.unlock() }
    func open() { condition.lock(); count = Int.max; condition.broadcast(); condition.unlock() }
    func wait(atLeast n: Int) {
        condition.lock()
        while count < n { condition.wait() }
        condition.unlock()
    }
}
