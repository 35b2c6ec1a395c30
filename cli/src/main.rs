//! `d402`: the command-line interface. It only parses and dispatches; the work is in the crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod capability;
mod client_cli;
mod incident;
mod keys;
mod maintainer;
mod namespace;
mod node;
mod ops_cli;
mod run;
mod serve;
mod signal;

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
    /// Publish capabilities: template, validate, register, inspect.
    Capability(capability::CapabilityArgs),
    /// Create the signing key of a role (publisher, worker, gateway, validator).
    Keys(keys::KeysArgs),
    /// Namespace ownership: vouch for a publisher key.
    Namespace(namespace::NamespaceArgs),
    /// Run a node of the peer network: a worker (--offer), a validator (--validate), a gateway
    /// (--http-port: sells the --offer capabilities over HTTP for x402 payments) or a bootstrap.
    Node(Box<node::NodeArgs>),
    /// Buy work from a gateway: discover what it sells, or pay for one task.
    Client(client_cli::ClientArgs),
    /// The whole market on this machine: local chains, a gateway, workers, a validator, and a
    /// paying demo client (or `--keep-running`).
    Devnet(d402_devnet::DevnetArgs),
    /// One look at a gateway's health: tasks stuck, settlements pending, pay owed, replays,
    /// fee-payer balances. Prints JSON; exits 3 when anything is alerting.
    OpsStatus(ops_cli::StatusArgs),
    /// Watch a gateway: report each alert when it starts, recurs or clears, to a JSONL file and
    /// a webhook.
    OpsMonitor(ops_cli::MonitorArgs),
    /// Keep a gateway's Solana channels moving: publish its signed roots, retry withdrawals for
    /// the named claimants, reclaim rent. Never closes a channel; holds no funds.
    SolanaChannelMaintainer(maintainer::MaintainerArgs),
    /// Incident shutdown of a stopped gateway's Solana channels, one step at a time: final-roots,
    /// withdraw, request-close, close (after the grace period), reclaim.
    SolanaChannelIncident(incident::IncidentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Capability(args) => capability::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Namespace(args) => namespace::run(args),
        Command::Node(args) => node::run(*args),
        Command::Client(args) => client_cli::run(args),
        Command::Devnet(args) => d402_devnet::run(args, || {
            let mut stop = signal::Stop::install();
            Box::pin(async move { stop.requested().await })
        }),
        Command::OpsStatus(args) => ops_cli::status(args),
        Command::OpsMonitor(args) => ops_cli::monitor(args),
        Command::SolanaChannelMaintainer(args) => maintainer::run(args),
        Command::SolanaChannelIncident(args) => incident::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One clear line: the chain of causes, joined, led by the stable code when one of the
            // causes has one (`error[fuel_exhausted]: …`), so scripts can match on it.
            let message = format!("{e:#}").replace('\n', " ");
            match stable_code(&e) {
                Some(code) => eprintln!("error[{code}]: {message}"),
                None => eprintln!("error: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// The machine-readable code of the first cause that has one: the same codes receipts, verdicts
/// and the HTTP API use.
fn stable_code(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<d402_host::HostError>() {
            return Some(e.code());
        }
        if let Some(e) = cause.downcast_ref::<d402_gateway::gateway::GatewayError>() {
            return Some(e.code());
        }
        if let Some(e) = cause.downcast_ref::<d402_rails::VerifyError>() {
            return Some(e.reason());
        }
        cause
            .downcast_ref::<d402_rails::RailError>()
            .and_then(|e| e.reason())
    })
}
