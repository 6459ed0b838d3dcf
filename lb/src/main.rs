//! `tandem`: see `tandem --help`, and README.md for the operator guide.
fn main() -> std::process::ExitCode {
    lb::cli::main()
}
