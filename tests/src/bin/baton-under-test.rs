//! The `baton` binary, built inside the test package so that end-to-end tests can start it
//! by path (`CARGO_BIN_EXE_baton-under-test`) as separate processes and kill them.

fn main() -> std::process::ExitCode {
    baton_cli::main()
}
