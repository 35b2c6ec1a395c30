//! Shared test fixtures: a host, component loading, and a tiny loopback HTTP server.
#![allow(dead_code)]

use std::sync::Arc;

use d402_core::{ContentId, Identity, Limits};
use d402_host::{EngineSettings, Host, HostConfig};

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
