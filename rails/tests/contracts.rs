//! The checked-in contract artifacts are what the pinned compiler makes of the checked-in
//! sources, and their code hashes are the ones recorded in `contracts/DEPLOYMENTS.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tools_dir() -> PathBuf {
    std::env::var_os("D402_TOOLS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/d402-tools")))
        .unwrap_or_default()
}

#[test]
fn checked_in_artifacts_match_a_fresh_compile() {
    if !tools_dir().join("node_modules/solc/soljson.js").is_file() {
        // scripts/setup.sh installs solc; without it there is nothing to compare against.
        eprintln!(
            "skipping: solc is not installed under {:?} (run scripts/setup.sh)",
            tools_dir()
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("node")
        .arg(manifest_dir().join("contracts/build.cjs"))
        .arg("--out")
        .arg(out.path())
        .env("D402_TOOLS", tools_dir())
        .status()
        .expect("node runs");
    assert!(status.success(), "contracts/build.cjs failed");
    for (name, checked_in) in d402_rails::evm::contracts::ARTIFACTS {
        let fresh = std::fs::read_to_string(out.path().join(format!("{name}.json"))).unwrap();
        assert!(
            fresh == checked_in,
            "{name}: the checked-in artifact differs from a fresh compile; run `node rails/contracts/build.cjs` and commit"
        );
    }
}

#[test]
fn deployments_record_the_code_hashes() {
    let doc = std::fs::read_to_string(Path::new(&manifest_dir()).join("contracts/DEPLOYMENTS.md"))
        .unwrap();
    let mut missing = Vec::new();
    for h in d402_rails::evm::code_hashes() {
        let line = format!("| `{}` | `{}` | `{}` |", h.contract, h.creation, h.runtime);
        if !doc.contains(&line) {
            missing.push(line);
        }
    }
    assert!(
        missing.is_empty(),
        "contracts/DEPLOYMENTS.md lacks these rows:\n{}",
        missing.join("\n")
    );
}
