// Tests that read "this thread's P" in-process: with Ps bound to CPUs (rseq, Proc.swift) a
// thread's P is its CPU's, so such tests keep the thread on one CPU while they run; with
// compare-and-swap binding it is the P the thread took last.
import CGoMallocSys
import Glibc
import XCTest
@testable import GoMallocCoreHosted

struct PinError: Error {}

// Glibc's module leaves out the _GNU_SOURCE calls; take them from libc by name.
private typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
private let getAffinity = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getaffinity")!, to: AffinityCall.self)
private let setAffinity = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity")!, to: AffinityCall.self)
private let getCPU = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_getcpu")!, to: (@convention(c) () -> Int32).self)

/// Keeps the calling thread on the CPU it runs on until `restore()` puts its affinity back.
struct CPUPin {
    private var saved = cpu_set_t()
    let cpu: Int32

    init() throws {
        guard getAffinity(0, MemoryLayout<cpu_set_t>.size, &saved) == 0 else { throw PinError() }
        var one = cpu_set_t()
        let cpu = getCPU()
        withUnsafeMutableBytes(of: &one) { raw in
            let words = raw.bindMemory(to: UInt.self)
            words[Int(cpu) / UInt.bitWidth] |= 1 << (UInt(cpu) % UInt(UInt.bitWidth))
        }
        guard setAffinity(0, MemoryLayout<cpu_set_t>.size, &one) == 0 else { throw PinError() }
        self.cpu = cpu
    }

    func restore() {
        var mask = saved
        _ = setAffinity(0, MemoryLayout<cpu_set_t>.size, &mask)
    }
}

/// The P this thread takes in malloc and free (pinned, under rseq), if it has been used.
func myP() -> UnsafeMutablePointer<PSlot>? {
    guard let h = theHeap() else { return nil }
    if h.pointee.cpuProcs != 0 {
        let cpu = Int(getCPU())
        return cpu < h.pointee.cpuProcs ? h.proc(cpu) : nil
    }
    return UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p)
}
