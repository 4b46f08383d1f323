//! The `shardcron` binary: see `shardcron --help`.

/// A burst of fires allocates on every runtime thread at once; glibc's
/// malloc spent a sixth of a worker's CPU there (profile of
/// `shardcron-bench live --jobs 10000`), mimalloc a fraction of it. The
/// library leaves the choice to the program that embeds it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shardcron_cli::main()
}
