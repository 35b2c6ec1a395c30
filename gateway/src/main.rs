//! `d402`: the command-line interface. It only parses and dispatches; the work is in the crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod run;

/// d402: a peer-to-peer market for sandboxed compute.
#[derive(Parser)]
#[command(name = "d402", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a capability component locally, or replay a receipt from its evidence.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One clear line: the chain of causes, joined.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
