// Report.swift — fatal reports without allocating: a fixed buffer, write(2), abort().
//
// Role: every message the core prints (bad free, broken invariant, statistics lines) is
//   formatted here into a stack buffer and written to a file descriptor in one write.
// Go counterpart: print.go, panic.go (`throw`).
// Invariants:
//   I1. Nothing here allocates: no String, no interpolation, no print; StaticString and
//       integers only, formatted into a fixed 256-byte buffer.
//   I2. A report is made only by a thread that holds no P and no lock: a SIGABRT handler
//       that calls malloc must not find the allocator locked by the dying thread. Code that
//       finds misuse while holding them (a sweep) defers it; the entry point that called it
//       reports it once it has let go (reportDeferred).
// Concurrency: reentrant; each report uses its own stack buffer. The deferred report is one
//   atomic word: the first finder wins, and every thread that checks it afterwards aborts.
// Failure: output that does not fit is truncated; the abort still happens.
import CGoMallocSys
import Synchronization

/// The decimal digits of a number, most significant first: the one formatter behind the
/// fixed-buffer writers (ReportLine, TextBuffer, the heap map's DumpWriter).
struct DecimalDigits {
    private(set) var bytes: InlineArray<20, UInt8> = InlineArray(repeating: 0)
    private(set) var count = 0

    init(_ v: UInt64) {
        var reversed: InlineArray<20, UInt8> = InlineArray(repeating: 0)
        var x = v
        repeat { reversed[count] = UInt8(x % 10) &+ 0x30; count &+= 1; x /= 10 } while x != 0
        for i in 0..<count { bytes[i] = reversed[count &- 1 &- i] }
    }
}

/// A line being formatted on the stack. Append pieces, then `write(to:)`.
struct ReportLine: ~Copyable {
    private var buffer: InlineArray<256, UInt8> = InlineArray(repeating: 0)
    private var count = 0

    init() {}

    mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { bytes in
            for b in bytes { appendByte(b) }
        }
    }

    /// Append raw C-string bytes (e.g. an option name from the environment).
    mutating func append(cString p: UnsafePointer<CChar>) {
        var i = 0
        while p[i] != 0 && i < 200 { appendByte(UInt8(bitPattern: p[i])); i += 1 }
    }

    mutating func appendByte(_ b: UInt8) {
        if count < 256 { buffer[count] = b; count += 1 }
    }

    mutating func append(decimal v: Int) {
        if v < 0 { appendByte(0x2D); append(decimal: UInt(v.magnitude)) } else { append(decimal: UInt(v)) }
    }

    mutating func append(decimal v: UInt) {
        let d = DecimalDigits(UInt64(v))
        for i in 0..<d.count { appendByte(d.bytes[i]) }
    }

    mutating func append(hex v: UInt) {
        append("0x")
        var started = false
        var shift = 60
        while shift >= 0 {
            let d = UInt8((v >> UInt(shift)) & 0xF)
            if d != 0 || started || shift == 0 {
                started = true
                appendByte(d < 10 ? d &+ 0x30 : d &+ 0x57)
            }
            shift -= 4
        }
    }

    /// Append `value` with `places` decimals of `value / scale` (e.g. percentages).
    mutating func append(fixed value: UInt, scale: UInt, places: Int) {
        append(decimal: value / scale)
        if places > 0 {
            appendByte(0x2E)
            var rem = value % scale
            for _ in 0..<places { rem *= 10; appendByte(UInt8(rem / scale) &+ 0x30); rem %= scale }
        }
    }

    /// Pad with spaces on the left so that `text` ends at column `width` (right alignment).
    mutating func padTo(_ width: Int) { while count < width { appendByte(0x20) } }
    var length: Int { count }

    consuming func write(to fd: Int32) {
        var line = self
        line.appendByte(0x0A)
        let n = line.count
        withUnsafeBytes(of: line.buffer) { raw in
            gm_sys_write(fd, raw.baseAddress, n)
        }
    }
}

/// Text formatted into a caller's buffer, snprintf-style: `length` counts every byte
/// appended, at most `capacity - 1` of them are stored, and `finish()` adds the NUL (when
/// `capacity > 0`) and returns the full length. Used for the JSON statistics and malloc_info.
struct TextBuffer: ~Copyable {
    private let base: UnsafeMutablePointer<UInt8>?
    private let capacity: Int
    private(set) var length = 0

    init(_ base: UnsafeMutablePointer<UInt8>?, capacity: Int) {
        self.base = base
        self.capacity = base == nil || capacity < 0 ? 0 : capacity
    }

    @inline(__always)
    mutating func appendByte(_ b: UInt8) {
        if length < capacity &- 1, let base { base[length] = b }
        length &+= 1
    }

    mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { bytes in
            for b in bytes { appendByte(b) }
        }
    }

    mutating func append(decimal v: UInt64) {
        let d = DecimalDigits(v)
        for i in 0..<d.count { appendByte(d.bytes[i]) }
    }

    consuming func finish() -> Int {
        if capacity > 0, let base { base[length < capacity ? length : capacity &- 1] = 0 }
        return length
    }
}

/// Go's `throw`: report a broken internal invariant and abort.
@inline(never)
func throwFatal(_ message: StaticString) -> Never {
    var line = ReportLine()
    line.append("gomalloc: fatal error: ")
    line.append(message)
    line.write(to: 2)
    gm_sys_abort()
}

/// Report a caller's misuse (`free(): double free 0x...`) and abort.
@inline(never)
func reportBadPointer(function: StaticString, problem: StaticString, address: UInt) -> Never {
    var line = ReportLine()
    line.append("gomalloc: ")
    line.append(function)
    line.append("(): ")
    line.append(problem)
    line.append(" ")
    line.append(hex: address)
    line.write(to: 2)
    gm_sys_abort()
}

/// The kinds of misuse a deferred report can name (also the `problem` of reportBadPointer).
enum BadPointerProblem: UInt {
    case doubleFree = 1
    case invalidPointer = 2

    var text: StaticString {
        switch self {
        case .doubleFree: "double free"
        case .invalidPointer: "invalid pointer"
        }
    }
}

/// The first misuse found while holding a P or a lock: problem << 56 | address (addresses
/// fit in heapAddrBits); 0 when none. Atomic: CAS from 0 (first wins), loads relaxed.
private let deferredReport = Atomic<UInt>(0)

/// Record misuse at `address` for the caller to report once it holds no P and no lock.
func deferBadPointer(_ problem: BadPointerProblem, address: UInt) {
    _ = deferredReport.compareExchange(expected: 0, desired: problem.rawValue << 56 | address,
                                       ordering: .relaxed)
}

/// Report a deferred misuse, if any. Called by the paths that can sweep (the malloc slow
/// path, trim) after they have released their P and locks, before they return anything.
@inline(__always)
func reportDeferred() {
    let r = deferredReport.load(ordering: .relaxed)
    if r != 0 { reportDeferredSlow(r) }
}

@inline(never)
private func reportDeferredSlow(_ r: UInt) -> Never {
    let problem = BadPointerProblem(rawValue: r >> 56) ?? .invalidPointer
    reportBadPointer(function: "free", problem: problem.text, address: r & ((1 << 56) - 1))
}

/// Cheap invariant (mimalloc's first tier): compiled in with GOMALLOC_INTERNAL_CHECKS.
@inline(__always)
func internalCheck(_ condition: @autoclosure () -> Bool, _ message: StaticString) {
    #if GOMALLOC_INTERNAL_CHECKS
    if !condition() { throwFatal(message) }
    #endif
}

/// Whether the cheap invariant checks are compiled into this build (tests read it).
#if GOMALLOC_INTERNAL_CHECKS
package let internalChecksEnabled = true
#else
package let internalChecksEnabled = false
#endif
