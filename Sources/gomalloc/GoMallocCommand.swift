import ArgumentParser

@main
struct GoMallocCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gomalloc",
        abstract: "Go's memory allocator as a malloc for Linux: run programs under it, inspect it, benchmark it.",
        subcommands: [RunCommand.self, SizeClassesCommand.self, HeapCommand.self, BenchCommand.self, InstallCommand.self]
    )
}
