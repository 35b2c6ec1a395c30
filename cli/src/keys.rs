//! `d402 keys generate --role R --state DIR`: a fresh ed25519 key in `DIR/keys/R.key` (mode 0600).
//! Only the public key is printed; an existing key is never overwritten.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use cap_std::fs::Dir;
use clap::{Args, Subcommand, ValueEnum};
use d402_core::Identity;
use d402_core::identity::IdentityError;
use serde_json::json;

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create the key of one role in its state folder, and print its public key.
    Generate {
        #[arg(long)]
        role: Role,
        /// The role's own state folder; the key goes in DIR/keys/ROLE.key.
        #[arg(long, value_name = "DIR")]
        state: std::path::PathBuf,
    },
}

/// The roles that hold a signing key. Each lives in its own state folder.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Worker,
    Gateway,
    Validator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Worker => "worker",
            Role::Gateway => "gateway",
            Role::Validator => "validator",
        }
    }

    pub fn file(self) -> String {
        format!("{}.key", self.as_str())
    }
}

pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Generate { role, state } => {
            let keys = keys_dir(&state, true)?;
            let identity = match Identity::create_new(&keys, &role.file()) {
                Err(IdentityError::Exists(_)) => anyhow::bail!(
                    "{} already holds a {} key; refusing to overwrite it",
                    state.join("keys").join(role.file()).display(),
                    role.as_str()
                ),
                other => other?,
            };
            println!(
                "{}",
                json!({"role": role.as_str(), "publicKey": identity.public_id()})
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `DIR/keys`, created (with `DIR`) if `create`.
pub fn keys_dir(state: &Path, create: bool) -> anyhow::Result<Dir> {
    if create {
        std::fs::create_dir_all(state.join("keys"))
            .with_context(|| format!("creating {}", state.join("keys").display()))?;
    }
    Dir::open_ambient_dir(state.join("keys"), cap_std::ambient_authority())
        .with_context(|| format!("opening {}", state.join("keys").display()))
}

/// Loads the `role` key from `DIR/keys`, or says how to make one.
pub fn load(state: &Path, role: Role) -> anyhow::Result<Identity> {
    let missing = || {
        anyhow::anyhow!(
            "no {role} key in {dir}: run `d402 keys generate --role {role} --state {state}` first",
            role = role.as_str(),
            dir = state.join("keys").display(),
            state = state.display()
        )
    };
    let keys = keys_dir(state, false).map_err(|_| missing())?;
    match Identity::load(&keys, &role.file()) {
        Err(IdentityError::Missing(_)) => Err(missing()),
        other => Ok(other?),
    }
}
