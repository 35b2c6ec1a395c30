//! `d402 namespace proof`: the namespace owner vouches for a publisher key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use d402_registry::namespace::NamespaceProofDocument;

use crate::keys::{self, Role};

#[derive(Args, Debug)]
pub struct NamespaceArgs {
    #[command(subcommand)]
    command: NamespaceCommand,
}

#[derive(Subcommand, Debug)]
enum NamespaceCommand {
    /// Sign, as the namespace owner, that PUBKEY may publish capabilities in NS. Prints the proof
    /// that `d402 capability register --namespace-proof` takes.
    Proof {
        #[arg(long, value_name = "NS")]
        namespace: String,
        /// The publisher's public key, `ed25519:<hex>` (from `d402 keys generate`).
        #[arg(long, value_name = "PUBKEY")]
        publisher: String,
        /// The namespace owner's state folder (its key is DIR/keys/publisher.key).
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
}

pub fn run(args: NamespaceArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NamespaceCommand::Proof {
            namespace,
            publisher,
            state,
        } => {
            let owner = keys::load(&state, Role::Publisher)?;
            let doc = NamespaceProofDocument::sign(&owner, &namespace, &publisher)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
