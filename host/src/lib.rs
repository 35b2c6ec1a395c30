//! d402-host: runs d402 capabilities (WASM components) so that nothing they do can hurt the node,
//! and so that anyone who runs the same implementation CID on the same input and evidence gets the
//! same output bytes and the same fuel count.
//!
//! ```no_run
//! use std::sync::Arc;
//! use d402_core::{ContentId, FrozenPages, Identity};
//! use d402_host::{EvidenceMode, Host, HostConfig, Task};
//!
//! let host = Host::new(HostConfig::default(), Arc::new(Identity::generate()?))?;
//! let wasm = std::fs::read("page_to_markdown.wasm")?;
//! let cid = ContentId::of(&wasm);
//! host.load(&cid, &wasm)?;
//! let mut pages = FrozenPages::new();
//! pages.insert("https://example.com/", "<h1>Hi</h1>".into())?;
//! let run = host.execute(Task {
//!     implementation: cid,
//!     input: r#"{"url":"https://example.com/"}"#,
//!     evidence: EvidenceMode::Live { snapshotter: Arc::new(pages) },
//!     ..Task::defaults(cid, "task-1")
//! })?;
//! println!("{}", run.output);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

mod compiled;
pub mod egress;
mod engine;
mod error;
pub mod evidence;
mod imports;
mod limits;
mod sandbox;
pub mod snapshot;
pub mod store;
mod task;

pub use compiled::LoadSource;
pub use engine::EngineSettings;
pub use error::HostError;
pub use evidence::ReplayBook;
pub use imports::{EvidenceMode, LogLine};
pub use snapshot::FetchSnapshotter;
pub use store::ContentStore;
pub use task::{Execution, Host, HostConfig, Task};
