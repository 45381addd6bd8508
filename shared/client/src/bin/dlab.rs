//! `dlab`: wiring only. Parses the command line, runs it on a tokio runtime, prints an error as
//! one line on stderr and exits with its code (see `dlab --help`).

use std::process::ExitCode;

use clap::Parser;
use dlab_client::cli::{Cli, exit, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dlab: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("dlab: {}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}
