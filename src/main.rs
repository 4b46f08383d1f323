//! The `shardcron` binary: see `shardcron --help`. Its allocator, and
//! why it is tuned as it is, are the `shardcron-alloc` crate's.

fn main() -> std::process::ExitCode {
    shardcron_alloc::keep_freed_memory();
    shardcron_cli::main()
}
