//! The `cairn` binary, built inside this package so the crash test can start it as a child
//! process (`CARGO_BIN_EXE_cairn`).

fn main() -> anyhow::Result<()> {
    cairn::cli::main()
}
