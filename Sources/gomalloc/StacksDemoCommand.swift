// StacksDemoCommand.swift — `gomalloc stacks-demo`: many cooperative coroutines on stacks
// from GoMalloc's stack allocator, from one mmap each and from malloc, compared for time
// and peak RSS.
//
// Role: the parent runs every source in a child process of its own (this executable again,
//   `stacks-demo --child SOURCE`, LD_PRELOAD removed, so `malloc` is glibc's), plus one
//   child with no coroutines for the baseline RSS of the process itself, and prints the
//   table. A child runs the workload of CStacksDemo (sd_run: coroutines, context switch,
//   scheduler, the stacks' own checks) and prints one `stacks-demo-child key=value ...`
//   line: its time, switches, checksum and its peak RSS. The peak RSS is the child's
//   VmHWM (/proc/self/status): wait4's ru_maxrss would count this parent's RSS too, as
//   Linux keeps the high-water mark of the address space a process had before execve
//   (see Benchmarks/workloads/run-measured.c).
// Exit: 0 and `OK stacks-demo` when every child succeeded with the same checksum; 2 when
//   the only failures are sources missing from this build (a source the C side does not
//   know); 1 otherwise. A child exits 0, 1 (the run failed) or 2 (source not in this build).
// Go counterpart: none (goroutine stacks: runtime/stack.go is what the gomalloc source
//   stands for).
import ArgumentParser
import CStacksDemo
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where a run's stacks come from (CStacksDemo's enum sd_source).
enum StackSource: String, CaseIterable, ExpressibleByArgument {
    case gomalloc, mmap, malloc

    var cValue: Int32 {
        switch self {
        case .gomalloc: return Int32(SD_SOURCE_GOMALLOC.rawValue)
        case .mmap: return Int32(SD_SOURCE_MMAP.rawValue)
        case .malloc: return Int32(SD_SOURCE_MALLOC.rawValue)
        }
    }

    /// "gomalloc,mmap" -> [.gomalloc, .mmap]; nil for an unknown name, a repeated one or none.
    static func list(_ text: String) -> [StackSource]? {
        var seen: [StackSource] = []
        for name in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let s = StackSource(rawValue: trimmed), !seen.contains(s) else { return nil }
            seen.append(s)
        }
        return seen.isEmpty ? nil : seen
    }
}

/// The context switch (CStacksDemo's enum sd_switch_kind).
enum ContextSwitch: String, CaseIterable, ExpressibleByArgument {
    case native, ucontext

    var cValue: Int32 {
        self == .native ? Int32(SD_SWITCH_NATIVE.rawValue) : Int32(SD_SWITCH_UCONTEXT.rawValue)
    }
}

struct StacksDemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stacks-demo",
        abstract: "Run many coroutines on GoMalloc stacks and compare time and peak RSS with mmap'd and malloc'd stacks.",
        discussion: """
            Every coroutine is created first (all --count of them alive at once), then a \
            round-robin scheduler resumes each until it yields or finishes. Coroutine i recurses \
            until it uses 1-6 KiB of its stack (by i; at most --stack-size minus 1.5 KiB), writes \
            a pattern of its own into every frame, yields --yields times at that depth, checks \
            its frames after every resume and on the way back, and finishes; its stack is freed \
            at once. A changed word fails the run. Sources: gomalloc (gm_stack_alloc, GoMalloc's \
            stack allocator), mmap (one MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK mapping \
            per stack, no guard page), malloc (glibc's, this process's allocator). Each source \
            runs in a child process of its own; a child with no coroutines gives the baseline \
            RSS. Columns: the run's wall time and its ratio to gomalloc's (to the first source \
            that ran when gomalloc did not), the child's peak RSS, the RSS the coroutines added \
            over the baseline and its ratio, and the context switches (two per resume). The \
            checksum of what the coroutines read back must be the same for every source.

            Example: gomalloc stacks-demo --count 20000 --sources mmap,malloc
            """)

    @Option(help: "Coroutines, all alive at once.")
    var count = 100_000

    @Option(help: ArgumentHelp("Bytes per stack: a power of two, at least 2048.", valueName: "bytes"))
    var stackSize = 8192

    @Option(help: "Times each coroutine yields at its deepest point.")
    var yields = 16

    @Option(help: ArgumentHelp("The stack sources to compare, in order, comma-separated: gomalloc, mmap, malloc.", valueName: "list"))
    var sources = "gomalloc,mmap,malloc"

    @Option(name: .customLong("switch"), help: "The context switch: native (our own, x86-64 and AArch64) or ucontext.")
    var contextSwitch: ContextSwitch = .native

    /// Run one source in this process and print its result line (the parent's children).
    @Option(help: .hidden)
    var child: StackSource?

    func validate() throws {
        if count < 0 || count > Int(UInt32.max) { throw ValidationError("--count must be from 0 to \(UInt32.max).") }
        if stackSize < 2048 || stackSize > 1 << 30 || stackSize & (stackSize - 1) != 0 {
            throw ValidationError("--stack-size must be a power of two from 2048 to 1 GiB.")
        }
        if yields < 0 || yields > Int(Int32.max) { throw ValidationError("--yields must be at least 0.") }
        if StackSource.list(sources) == nil {
            throw ValidationError("--sources: a comma-separated list of gomalloc, mmap, malloc, each at most once.")
        }
    }

    func run() throws {
        if let child {
            try runChild(child)
        } else {
            try runParent(StackSource.list(sources) ?? [])
        }
    }

    // MARK: The child

    private func runChild(_ source: StackSource) throws {
        var result = sd_result()
        let rc = sd_run_switch(contextSwitch.cValue, source.cValue, count, stackSize, Int32(yields), &result)
        guard rc == Int32(SD_OK) else {
            let message = withUnsafeBytes(of: &result.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            FileHandle.standardError.write(Data("gomalloc stacks-demo: \(message)\n".utf8))
            throw ExitCode(rc == Int32(SD_UNAVAILABLE) ? 2 : 1)
        }
        let report = StacksDemoChildReport(
            source: source.rawValue, count: count, seconds: result.seconds, switches: result.switches,
            checksum: result.checksum, peakRSSKiB: Self.peakRSSKiB() ?? -1)
        print(report.line)
    }

    /// This process's peak RSS (VmHWM), in KiB.
    static func peakRSSKiB() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.dropFirst("VmHWM:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    // MARK: The parent

    private func runParent(_ list: [StackSource]) throws {
        let native = sd_switch_native_available() != 0
        let how = contextSwitch == .ucontext ? "ucontext" : native ? "native" : "ucontext (no native switch here)"
        print("stacks-demo: \(count) coroutines, \(stackSize)-byte stacks, \(yields) yields each, \(how) context switch")

        let baseline = measure(.mmap, count: 0)
        var rows: [StacksDemoRow] = []
        for source in list { rows.append(StacksDemoRow(source: source.rawValue, outcome: measure(source, count: count))) }

        var failures: [String] = []
        var baselineKiB = 0
        switch baseline {
        case .ran(let r): baselineKiB = max(r.peakRSSKiB, 0)
        case .failed(let why, _): failures.append("baseline: \(why)")
        }
        print(String(format: "baseline: %.1f MiB peak RSS for a child with no coroutines", Double(baselineKiB) / 1024))
        print("")
        for line in StacksDemoTable.render(rows, baselineKiB: baselineKiB) { print(line) }

        for row in rows {
            if case .failed(let why, _) = row.outcome { failures.append("\(row.source): \(why)") }
        }
        let ran = rows.compactMap { row -> StacksDemoChildReport? in
            if case .ran(let r) = row.outcome { return r } else { return nil }
        }
        if Set(ran.map(\.checksum)).count > 1 {
            failures.append("the checksums differ: " + ran.map { "\($0.source) \(StacksDemoChildReport.hex($0.checksum))" }.joined(separator: ", "))
        } else if let first = ran.first {
            print("")
            print("checksum \(StacksDemoChildReport.hex(first.checksum)) on \(ran.count == 1 ? "the one source" : "every source") that ran")
        }
        guard failures.isEmpty else {
            for f in failures { FileHandle.standardError.write(Data("gomalloc stacks-demo: \(f)\n".utf8)) }
            print("FAILED stacks-demo")
            let onlyMissing = rows.allSatisfy { row in
                if case .failed(_, let code) = row.outcome { return code == 2 } else { return true }
            } && Set(ran.map(\.checksum)).count <= 1 && !(baseline.failed)
            throw ExitCode(onlyMissing ? 2 : 1)
        }
        print("OK stacks-demo")
    }

    /// Runs `source` in a child process (this executable again) and reads its result line.
    private func measure(_ source: StackSource, count: Int) -> StacksDemoOutcome {
        let tag = "gomalloc-stacks-demo-\(getpid())-\(source.rawValue)-\(count)"
        let dir = FileManager.default.temporaryDirectory
        let outPath = dir.appendingPathComponent("\(tag).out").path
        let errPath = dir.appendingPathComponent("\(tag).err").path
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = nil
        let arguments = ["stacks-demo", "--child", source.rawValue, "--count", "\(count)", "--stack-size", "\(stackSize)",
                         "--yields", "\(yields)", "--switch", contextSwitch.rawValue]
        let outcome: RunOutcome
        do {
            outcome = try spawnAndWait(Locations.executable.path, arguments, environment: environment,
                                       stdoutPath: outPath, stderrPath: errPath, timeout: 3600)
        } catch {
            return .failed("\(error)", exitCode: nil)
        }
        guard outcome.ok else {
            // The child's own message, without its "gomalloc stacks-demo: " prefix.
            let said = tail((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "", lines: 3)
                .replacingOccurrences(of: "gomalloc stacks-demo: ", with: "")
            let how = outcome.timedOut ? "timed out" : outcome.exitCode.map { "exit status \($0)" } ?? "killed by signal \(outcome.signal ?? 0)"
            return .failed(said.isEmpty ? how : "\(said) (\(how))", exitCode: outcome.exitCode)
        }
        let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        guard let report = StacksDemoChildReport(output: text) else {
            return .failed("no result line in the child's output: \(tail(text, lines: 3))", exitCode: nil)
        }
        return .ran(report)
    }
}

// MARK: - The pure parts (tested in GoMallocCLITests)

/// A child's result line: `stacks-demo-child source=mmap count=100000 seconds=1.234567
/// switches=3400000 checksum=0x... peak_rss_kib=123456`.
struct StacksDemoChildReport: Equatable {
    static let prefix = "stacks-demo-child"

    var source: String
    var count: Int
    var seconds: Double
    var switches: UInt64
    var checksum: UInt64
    var peakRSSKiB: Int

    static func hex(_ x: UInt64) -> String {
        let digits = String(x, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    var line: String {
        "\(Self.prefix) source=\(source) count=\(count) seconds=\(String(format: "%.6f", seconds)) switches=\(switches) checksum=\(Self.hex(checksum)) peak_rss_kib=\(peakRSSKiB)"
    }

    init(source: String, count: Int, seconds: Double, switches: UInt64, checksum: UInt64, peakRSSKiB: Int) {
        self.source = source
        self.count = count
        self.seconds = seconds
        self.switches = switches
        self.checksum = checksum
        self.peakRSSKiB = peakRSSKiB
    }

    /// The result line among a child's output lines; nil when there is none or it is malformed.
    init?(output: String) {
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix(Self.prefix + " ") }) else { return nil }
        var fields: [String: String] = [:]
        for pair in line.split(separator: " ").dropFirst() {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { return nil }
            fields[String(kv[0])] = String(kv[1])
        }
        guard let source = fields["source"], let count = fields["count"].flatMap({ Int($0) }),
              let seconds = fields["seconds"].flatMap({ Double($0) }),
              let switches = fields["switches"].flatMap({ UInt64($0) }),
              let checksumText = fields["checksum"], checksumText.hasPrefix("0x"),
              let checksum = UInt64(checksumText.dropFirst(2), radix: 16),
              let rss = fields["peak_rss_kib"].flatMap({ Int($0) })
        else { return nil }
        self.init(source: source, count: count, seconds: seconds, switches: switches, checksum: checksum, peakRSSKiB: rss)
    }
}

enum StacksDemoOutcome {
    case ran(StacksDemoChildReport)
    /// Why, and the child's exit status when it exited (2: the source is not in this build).
    case failed(String, exitCode: Int32?)

    var failed: Bool { if case .failed = self { return true } else { return false } }
}

struct StacksDemoRow {
    var source: String
    var outcome: StacksDemoOutcome
}

enum StacksDemoTable {
    /// The table's lines: a header, one row per source (a failed one says why). Ratios are to
    /// gomalloc's row, or to the first row that ran when gomalloc did not.
    static func render(_ rows: [StacksDemoRow], baselineKiB: Int) -> [String] {
        let ran: [(String, StacksDemoChildReport)] = rows.compactMap { row in
            if case .ran(let r) = row.outcome { return (row.source, r) } else { return nil }
        }
        let reference = ran.first { $0.0 == StackSource.gomalloc.rawValue } ?? ran.first
        let refName = reference?.0 ?? StackSource.gomalloc.rawValue
        func added(_ r: StacksDemoChildReport) -> Double { Double(max(r.peakRSSKiB - baselineKiB, 0)) / 1024 }
        // Column widths: source, time, time ratio, peak RSS, added, added ratio, switches.
        let widths = [9, 9, 13, 14, 11, 13, 10]
        func cells(_ values: [String]) -> String {
            zip(values, widths).enumerated().map { i, vw in i == 0 ? vw.0.rightPad(vw.1) : vw.0.leftPad(vw.1) }
                .joined(separator: "  ")
        }
        var lines = [cells(["source", "time (s)", "time/\(refName)", "peak RSS (MiB)", "added (MiB)", "added/\(refName)", "switches"])]
        for row in rows {
            switch row.outcome {
            case .ran(let r):
                let timeRatio = reference.flatMap { $0.1.seconds > 0 ? r.seconds / $0.1.seconds : nil }
                let rssRatio = reference.flatMap { added($0.1) > 0 ? added(r) / added($0.1) : nil }
                lines.append(cells([row.source, String(format: "%.3f", r.seconds), formatRatio(timeRatio),
                                    r.peakRSSKiB < 0 ? "-" : String(format: "%.1f", Double(r.peakRSSKiB) / 1024),
                                    String(format: "%.1f", added(r)),
                                    formatRatio(rssRatio), "\(r.switches)"]))
            case .failed(let why, _):
                lines.append(row.source.rightPad(widths[0]) + "  FAILED: " + why)
            }
        }
        return lines
    }
}
