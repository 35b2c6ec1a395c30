//! Shared test fixtures: a host, component loading, and a tiny loopback HTTP server.
#![allow(dead_code)]

use std::sync::Arc;

use d402_host::{ContentId, EngineSettings, Host, HostConfig, Identity, Limits};

pub fn host() -> Host {
    host_with(EngineSettings::default(), [1; 32])
}

pub fn host_with(engine: EngineSettings, seed: [u8; 32]) -> Host {
    let config = HostConfig {
        engine,
        max_limits: Limits::default(),
        compiled_cache: None,
    };
    Host::new(config, Arc::new(Identity::from_seed(seed))).expect("host")
}

/// Reads a component and loads it under its CID.
pub fn load(host: &Host, path: &str) -> (ContentId, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let cid = ContentId::of(&bytes);
    host.load(&cid, &bytes)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"));
    (cid, bytes)
}

#[allow(unused_imports)] // not every test binary that uses this module needs it
pub use d402_loopback_server::LoopbackServer;

/// The Rust documentation that ships with the toolchain: a corpus of real HTML on every machine.
pub fn rust_doc_root() -> std::path::PathBuf {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    let sysroot = String::from_utf8(out.stdout).expect("utf-8 sysroot");
    std::path::Path::new(sysroot.trim()).join("share/doc/rust/html")
}

/// At least `n` pages of the Rust book, in a fixed order.
pub fn book_pages(n: usize) -> Vec<std::path::PathBuf> {
    let dir = rust_doc_root().join("book");
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the rust-docs component is needed)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ch") && n.ends_with(".html"))
        })
        .collect();
    pages.sort();
    assert!(
        pages.len() >= n,
        "only {} book pages under {}",
        pages.len(),
        dir.display()
    );
    pages.truncate(n);
    pages
}
