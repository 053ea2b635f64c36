// The rseq gate (gomalloc_sys.h, Proc.swift): gm_rseq_gate = blockers * 2^24 - ncpu admits
// a CPU id to the critical section exactly when nobody blocks the CPU Ps, and the section
// then takes the P of the CPU the thread runs on. Under GOMALLOC_RSEQ=0 (CI runs the suite
// both ways) and valgrind there are no CPU Ps: the gate is 0 and every section fails.
import CGoMallocSys
import Synchronization
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class ProcBindingTests: XCTestCase {
    /// The section, retried while it is interrupted or the P is briefly held by another
    /// thread of this process (a bounded number of tries, no sleeping).
    private func take(_ h: UnsafeMutablePointer<MHeap>, tries: Int) -> UInt {
        for _ in 0..<tries {
            let slot = gm_sys_rseq_take_p(h.pointee.cpuProcsEnd)
            if slot != 0 { return slot }
        }
        return 0
    }

    private func giveBack(_ slot: UInt) {
        UnsafeMutablePointer<PSlot>(bitPattern: slot)!.pointee.owner.store(0, ordering: .releasing)
    }

    func testTheGateAdmitsThisCPUsPOnlyWhileNobodyBlocks() throws {
        GoAllocator.deallocate(try XCTUnwrap(GoAllocator.allocate(byteCount: 16, alignment: 8)))
        let h = try XCTUnwrap(theHeap())
        let pin = try CPUPin()
        defer { pin.restore() }
        let ncpu = h.pointee.cpuProcs
        XCTAssertEqual(gm_rseq_gate, -Int64(ncpu))
        if ncpu == 0 {
            XCTAssertEqual(take(h, tries: 100), 0, "no CPU Ps: every section fails")
            return
        }
        XCTAssertEqual(h.pointee.cpuProcsEnd, UInt(bitPattern: h.pointee.procs + ncpu * pSlotStride))
        let slot = take(h, tries: 100_000)
        XCTAssertEqual(slot, UInt(bitPattern: h.proc(Int(pin.cpu))), "the section took another CPU's P")
        if slot != 0 {
            XCTAssertEqual(take(h, tries: 100), 0, "a held P was taken again")
            giveBack(slot)
        }
        // Blockers nest: each adds 2^24; while any is there, no section commits.
        h.blockCPUProcs()
        XCTAssertEqual(gm_rseq_gate, (1 << 24) - Int64(ncpu))
        XCTAssertEqual(take(h, tries: 100), 0)
        h.blockCPUProcs()
        XCTAssertEqual(gm_rseq_gate, (2 << 24) - Int64(ncpu))
        h.unblockCPUProcs()
        XCTAssertEqual(take(h, tries: 100), 0)
        h.unblockCPUProcs()
        XCTAssertEqual(gm_rseq_gate, -Int64(ncpu))
        let again = take(h, tries: 100_000)
        XCTAssertEqual(again, UInt(bitPattern: h.proc(Int(pin.cpu))))
        if again != 0 { giveBack(again) }
    }
}
