// Processes.swift: spawning and timing child processes for `gomalloc bench`: posix_spawn, a
// watchdog for timeouts, wait4 for the child's own peak RSS and CPU time, the run-measured
// shim (optionally with the workload's RSS sampled over time, RSSSampler), and describing a
// failed run.

import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct RunOutcome {
    var exitCode: Int32?  // nil when killed by a signal
    var signal: Int32?
    var timedOut: Bool
    var wallSeconds: Double
    var maxRSSKiB: Int
    var userSeconds: Double
    var systemSeconds: Double
    /// The workload's RSS every 100 ms (measuredRun with an RSSSampler), and the sampler's
    /// time origin (CLOCK_MONOTONIC seconds) for placing the workload's phase markers.
    var rssSeries: [RSSSampleJSON]? = nil
    var rssOrigin: Double? = nil
    /// The workload's phase markers on that time axis (filled in by BenchRunner from stdout).
    var phases: [PhaseJSON]? = nil
    /// A real server's throughputs from its summary line (filled in by BenchRunner).
    var metrics: [String: Double]? = nil
    var ok: Bool { exitCode == 0 && !timedOut }
}

struct SpawnError: Error, CustomStringConvertible {
    var description: String
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Kills a child that outlives its deadline. The child is only marked finished after it
/// has exited but before it is reaped (waitid with WNOWAIT), so the pid cannot have been
/// reused by the time the timer fires.
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var finished = false
    private var fired = false
    private let pid: pid_t

    init(pid: pid_t, seconds: Double) {
        self.pid = pid
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            if !finished {
                fired = true
                kill(pid, SIGKILL)
            }
            lock.unlock()
        }
    }

    func finish() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        finished = true
        return fired
    }
}

/// Spawns `path` directly (no shell) with stdin from /dev/null and stdout/stderr to files,
/// waits for it and returns its own wall time, peak RSS and CPU time (from wait4).
/// `started` is called with the child's pid as soon as it has been spawned.
func spawnAndWait(
    _ path: String, _ arguments: [String], environment: [String: String],
    stdoutPath: String, stderrPath: String, timeout: Double, started: ((pid_t) -> Void)? = nil
) throws -> RunOutcome {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attr, &noSignals)
    var defaultSignals = sigset_t()
    sigemptyset(&defaultSignals)
    sigaddset(&defaultSignals, SIGPIPE)
    posix_spawnattr_setsigdefault(&attr, &defaultSignals)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    let envp: [UnsafeMutablePointer<CChar>?] = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let start = monotonicSeconds()
    let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
    if rc != 0 { throw SpawnError(description: "cannot start \(path): \(String(cString: strerror(rc)))") }
    started?(pid)
    let watchdog = Watchdog(pid: pid, seconds: timeout)
    var info = siginfo_t()
    while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 {
        if errno != EINTR { break }
    }
    let wall = monotonicSeconds() - start
    let timedOut = watchdog.finish()
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        if errno != EINTR { throw SpawnError(description: "wait4 failed: \(String(cString: strerror(errno)))") }
    }
    let termSignal = status & 0x7f
    let exited = termSignal == 0
    return RunOutcome(
        exitCode: exited ? (status >> 8) & 0xff : nil,
        signal: exited ? nil : termSignal,
        timedOut: timedOut,
        wallSeconds: wall,
        maxRSSKiB: Int(usage.ru_maxrss),
        userSeconds: Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6,
        systemSeconds: Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
    )
}

/// Runs a helper command and returns its stdout (stderr discarded); throws on failure.
func captureOutput(_ path: String, _ arguments: [String], timeout: Double = 60) throws -> String {
    let dir = FileManager.default.temporaryDirectory
    let tag = "gomalloc-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let outPath = dir.appendingPathComponent("\(tag).out").path
    let errPath = dir.appendingPathComponent("\(tag).err").path
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    var env = ProcessInfo.processInfo.environment
    env["LD_PRELOAD"] = nil
    let outcome = try spawnAndWait(path, arguments, environment: env, stdoutPath: outPath, stderrPath: errPath, timeout: timeout)
    let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    guard outcome.ok else {
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        throw SpawnError(description: "\(path) \(arguments.joined(separator: " ")) failed: \(tail(err, lines: 5))")
    }
    return text
}

/// Runs one workload through the run-measured shim (see Benchmarks/workloads/run-measured.c
/// for why the shim is needed: ru_maxrss would otherwise include this process's RSS) and
/// returns the workload process's own wall time, peak RSS and CPU time; with a sampler, also
/// its RSS over time.
func measuredRun(
    shim: String, exe: String, arguments: [String], preload: String?, environment: [String: String],
    resultPath: String, stdoutPath: String, stderrPath: String, timeout: Double, sampler: RSSSampler? = nil
) throws -> RunOutcome {
    var env = environment
    env["LD_PRELOAD"] = nil  // the shim itself runs on the system allocator
    try? FileManager.default.removeItem(atPath: resultPath)
    var series: [RSSSampleJSON]?
    let shimOutcome: RunOutcome
    do {
        defer { if let sampler { series = sampler.stop() } }
        shimOutcome = try spawnAndWait(
            shim, [resultPath, preload ?? "-", "--", exe] + arguments, environment: env,
            stdoutPath: stdoutPath, stderrPath: stderrPath, timeout: timeout,
            started: sampler.map { s in { pid in s.start(shimPid: pid) } })
    }
    let fields = ((try? String(contentsOfFile: resultPath, encoding: .utf8)) ?? "").split(separator: " ")
        .map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
    guard fields.count >= 6, let wall = Double(fields[0]), let rss = Int(fields[1]), let user = Double(fields[2]),
        let sys = Double(fields[3]), let code = Int32(fields[4]), let sig = Int32(fields[5])
    else {
        var o = shimOutcome
        if o.exitCode == 0 { o.exitCode = 125 }  // no result although the shim succeeded
        return o
    }
    return RunOutcome(
        exitCode: sig == 0 ? code : nil, signal: sig == 0 ? nil : sig, timedOut: shimOutcome.timedOut,
        wallSeconds: wall, maxRSSKiB: rss, userSeconds: user, systemSeconds: sys,
        rssSeries: series, rssOrigin: sampler?.origin)
}

func findInPath(_ name: String) -> String? {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

func tail(_ text: String, lines: Int) -> String {
    let all = text.split(separator: "\n", omittingEmptySubsequences: true)
    return all.suffix(lines).joined(separator: " | ")
}

func describeFailure(_ o: RunOutcome, stderrPath: String) -> String {
    let err = tail((try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "", lines: 3)
    let how: String
    if o.timedOut {
        how = "timed out"
    } else if let code = o.exitCode {
        how = "exit status \(code)"
    } else {
        how = "killed by signal \(o.signal ?? 0)"
    }
    return err.isEmpty ? how : "\(how): \(err)"
}
