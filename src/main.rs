//! The `h3fleet` command-line tool; see `h3fleet --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
