// RSSSampler.swift: RSS over time for `gomalloc bench`: a thread that reads the running
// workload's resident set from /proc/PID/statm every 100 ms while it runs (the workload is
// the child of the run-measured shim, found by its parent pid) — or, for a server that
// forks workers (nginx, PostgreSQL), the Pss summed over its process tree — and the parser
// of the phase markers a workload prints (`phase=NAME mono_s=S rss_kib=N`, server-churn.c).

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Samples the RSS of the shim's child (the workload) from start(shimPid:) until stop().
/// Times are milliseconds since start(shimPid:), which is called right after the shim is
/// spawned; a phase marker's CLOCK_MONOTONIC time is placed on the same axis (origin).
final class RSSSampler: @unchecked Sendable {
    let interval: Double
    /// Sum the proportional set size (smaps_rollup's Pss) over the workload and all its
    /// descendants instead of reading the workload's RSS: pages shared between the
    /// processes (a server's shared buffers, its binary) count once.
    let processTree: Bool
    private let condition = NSCondition()
    private var stopped = false
    private var running = false
    private var finished = false
    private var samples: [RSSSampleJSON] = []
    private(set) var origin: Double = 0

    init(interval: Double = 0.1, processTree: Bool = false) {
        self.interval = interval
        self.processTree = processTree
    }

    func start(shimPid: pid_t) {
        condition.lock()
        origin = monotonicSeconds()
        running = true
        condition.unlock()
        let origin = origin
        let thread = Thread { [self] in
            sample(shimPid: shimPid, origin: origin)
            condition.lock()
            finished = true
            condition.broadcast()
            condition.unlock()
        }
        thread.start()
    }

    /// Stops the sampling thread and returns the samples taken.
    func stop() -> [RSSSampleJSON] {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running && !finished { condition.wait() }
        let result = samples
        condition.unlock()
        return result
    }

    private func sample(shimPid: pid_t, origin: Double) {
        var child: pid_t?
        var tick = 1
        while true {
            condition.lock()
            let deadline = origin + Double(tick) * interval
            while !stopped, monotonicSeconds() < deadline {
                _ = condition.wait(until: Date(timeIntervalSinceNow: max(0, deadline - monotonicSeconds())))
            }
            if stopped {
                condition.unlock()
                return
            }
            condition.unlock()
            let now = monotonicSeconds()
            if child == nil { child = childProcess(of: shimPid) }
            if let pid = child, let kib = processTree ? treePssKiB(root: pid) : residentKiB(pid: pid) {
                condition.lock()
                samples.append(RSSSampleJSON(timeMs: Int(((now - origin) * 1000).rounded()), rssKiB: kib))
                condition.unlock()
            }
            tick += 1
            // Skip ticks missed while this machine was busy rather than bunching samples.
            while origin + Double(tick) * interval < monotonicSeconds() { tick += 1 }
        }
    }
}

/// The resident set of `pid` in KiB (/proc/PID/statm's second field); nil when the
/// process is gone or a zombie (whose statm reads 0).
func residentKiB(pid: pid_t) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]), pages > 0 else { return nil }
    return pages * Int(getpagesize()) / 1024
}

/// The Pss (KiB) summed over `root` and those of its descendants that run the same program
/// (same /proc/PID/comm: a server's forked workers and backends; the workload's load
/// driver, forked before the server's exec, keeps the workload's name and is left out with
/// everything it runs); nil when `root` is gone.
func treePssKiB(root: pid_t) -> Int? {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc"),
        let program = commandName(of: root), let rootPss = pssKiB(pid: root)
    else { return nil }
    var children: [pid_t: [pid_t]] = [:]
    for name in entries {
        if let pid = pid_t(name), let parent = parentPid(of: pid) { children[parent, default: []].append(pid) }
    }
    var total = rootPss, stack = children[root] ?? []
    while let pid = stack.popLast() {
        guard commandName(of: pid) == program else { continue }
        total += pssKiB(pid: pid) ?? 0
        stack += children[pid] ?? []
    }
    return total
}

func commandName(of pid: pid_t) -> String? {
    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)).map { $0.trimmingCharacters(in: .newlines) }
}

/// /proc/PID/smaps_rollup's Pss line, in KiB.
func pssKiB(pid: pid_t) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") })
    else { return nil }
    return Int(line.dropFirst(4).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
}

/// The parent pid in /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold spaces).
func parentPid(of pid: pid_t) -> pid_t? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count >= 2 else { return nil }
    return pid_t(fields[1])
}

/// A child of `parent`: the pid right after it first (fork's usual choice), else a scan of
/// /proc (/proc/PID/task/PID/children needs CONFIG_PROC_CHILDREN, which not every kernel has).
func childProcess(of parent: pid_t) -> pid_t? {
    if parentPid(of: parent + 1) == parent { return parent + 1 }
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
    for name in entries {
        if let pid = pid_t(name), pid != parent, parentPid(of: pid) == parent { return pid }
    }
    return nil
}

/// The phase markers in a workload's stdout, `phase=NAME mono_s=S rss_kib=N` lines, with
/// their times in milliseconds since `origin` (CLOCK_MONOTONIC seconds, RSSSampler's).
/// The `key=value` fields of a workload's output line (a phase marker, the summary).
func keyValueFields(_ line: Substring) -> [String: String] {
    var fields: [String: String] = [:]
    for part in line.split(separator: " ") {
        let kv = part.split(separator: "=", maxSplits: 1)
        if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
    }
    return fields
}

func parsePhaseMarkers(_ stdout: String, origin: Double) -> [PhaseJSON] {
    var phases: [PhaseJSON] = []
    for line in stdout.split(separator: "\n") where line.hasPrefix("phase=") {
        let fields = keyValueFields(line)
        guard let name = fields["phase"], let mono = Double(fields["mono_s"] ?? ""), let kib = Int(fields["rss_kib"] ?? "")
        else { continue }
        phases.append(PhaseJSON(name: name, timeMs: Int(((mono - origin) * 1000).rounded()), rssKiB: kib))
    }
    return phases
}
