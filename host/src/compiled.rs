//! Compiled components, cached by implementation CID so a warm node never compiles.
//!
//! Two levels: in memory, a ready `InstancePre` per CID (instantiating from it costs microseconds);
//! on disk, wasmtime's precompiled artifact under `compiled/<cid>-<engine fingerprint>.cwasm`, so a
//! restarted node loads in about a millisecond instead of recompiling. Artifacts are written to a
//! temporary name and renamed, so a crash never leaves a torn file; wasmtime refuses an artifact made
//! by an engine with other settings.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use cap_std::fs::Dir;
use wasmtime::component::{Component, Linker};

use crate::error::HostError;
use crate::imports::{CapabilityPre, TaskState};
use crate::limits::Limits;
use d402_core::content_id::ContentId;

/// A component ready to instantiate.
pub struct Prepared {
    pub(crate) pre: CapabilityPre<TaskState>,
}

/// Where a component came from on this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Memory,
    Disk,
    Compiled,
}

pub(crate) struct ComponentCache {
    dir: Option<Dir>,
    fingerprint: String,
    /// The node's caps on task limits, which the instance pool is sized to.
    caps: Limits,
    ready: Mutex<HashMap<ContentId, Arc<Prepared>>>,
    /// One lock per CID being loaded, so that tasks arriving while a component compiles wait for
    /// that compile instead of each compiling it again (a 4.5 MB component takes seconds, and
    /// eight concurrent first tasks used to compile it eight times over).
    loading: Mutex<HashMap<ContentId, Arc<Mutex<()>>>>,
}

/// A package whose interfaces capabilities may import, at the version the host links.
struct Package {
    name: &'static str,
    /// The version the host provides (`major.minor.patch`); an import of the same package at an
    /// earlier semver-compatible version links to it too.
    version: (u64, u64, u64),
    interfaces: &'static [&'static str],
}

const WASI_0_2: (u64, u64, u64) = (0, 2, 12);

/// Everything a capability may import, by exact interface name. Anything else is refused before the
/// component runs: a made-up interface inside a known package (`wasi:cli/backdoor`) is as unknown
/// as a made-up package.
const PROVIDED: &[Package] = &[
    Package {
        name: "d402:capability",
        version: (1, 0, 0),
        interfaces: &["host", "types"],
    },
    Package {
        name: "wasi:cli",
        version: WASI_0_2,
        interfaces: &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    },
    Package {
        name: "wasi:clocks",
        version: WASI_0_2,
        interfaces: &["monotonic-clock", "wall-clock"],
    },
    Package {
        name: "wasi:io",
        version: WASI_0_2,
        interfaces: &["error", "poll", "streams"],
    },
    Package {
        name: "wasi:random",
        version: WASI_0_2,
        interfaces: &["random", "insecure", "insecure-seed"],
    },
    Package {
        name: "wasi:filesystem",
        version: WASI_0_2,
        interfaces: &["types", "preopens"],
    },
    // Linked so that a std program that mentions sockets can load, but every socket operation is
    // refused by the sandbox (no TCP, no UDP, no name lookup).
    Package {
        name: "wasi:sockets",
        version: WASI_0_2,
        interfaces: &[
            "network",
            "instance-network",
            "ip-name-lookup",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
        ],
    },
];

/// Known packages that d402 deliberately does not give capabilities: all HTTP goes through
/// `d402:capability/host.fetch`, where the egress policy and evidence recording apply.
const FORBIDDEN: &[&str] = &["wasi:http"];

/// `major.minor.patch`, nothing else (no pre-release or build suffix).
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| {
        // Leading zeros and signs are not semver.
        if p.is_empty()
            || (p.len() > 1 && p.starts_with('0'))
            || !p.bytes().all(|b| b.is_ascii_digit())
        {
            None
        } else {
            p.parse::<u64>().ok()
        }
    });
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Whether an import at `wanted` links to `provided` (semver-compatible and not newer).
fn links_to(wanted: (u64, u64, u64), provided: (u64, u64, u64)) -> bool {
    if wanted.0 != provided.0 {
        return false;
    }
    if wanted.0 == 0 {
        wanted.1 == provided.1 && wanted.2 <= provided.2
    } else {
        (wanted.1, wanted.2) <= (provided.1, provided.2)
    }
}

/// Checks one import name (`namespace:package/interface@version`).
fn check_import(name: &str) -> Result<(), HostError> {
    let (path, version) = name.split_once('@').unwrap_or((name, ""));
    let (package, interface) = path.split_once('/').unwrap_or((path, ""));
    if FORBIDDEN.contains(&package) {
        return Err(HostError::ForbiddenImport {
            name: name.to_string(),
        });
    }
    let provided = PROVIDED.iter().any(|p| {
        p.name == package
            && p.interfaces.contains(&interface)
            && parse_version(version).is_some_and(|v| links_to(v, p.version))
    });
    if provided {
        Ok(())
    } else {
        Err(HostError::UnknownImport {
            name: name.to_string(),
        })
    }
}

/// Refuses a component whose core modules declare a table or a linear memory that starts larger
/// than the node's caps allow, with the limit's own error. The instance pool is sized to the caps,
/// so such a declaration would otherwise surface as a pool error at compile time instead of as the
/// limit it breaks. Malformed bytes are left for the compiler to report.
fn check_declared_sizes(bytes: &[u8], caps: &Limits) -> Result<(), HostError> {
    use wasmparser::Payload;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::TableSection(tables)) => {
                for table in tables.into_iter().flatten() {
                    if table.ty.initial > caps.table_elements {
                        return Err(HostError::TableLimit {
                            requested: table.ty.initial,
                            limit: caps.table_elements,
                        });
                    }
                }
            }
            Ok(Payload::MemorySection(memories)) => {
                for memory in memories.into_iter().flatten() {
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let initial = memory.initial.saturating_mul(page);
                    if initial > caps.memory_bytes {
                        return Err(HostError::MemoryLimit {
                            requested: initial,
                            limit: caps.memory_bytes,
                        });
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

fn check_imports(component: &Component, engine: &wasmtime::Engine) -> Result<(), HostError> {
    for (name, _) in component.component_type().imports(engine) {
        check_import(name)?;
    }
    Ok(())
}

impl ComponentCache {
    pub(crate) fn new(dir: Option<Dir>, fingerprint: String, caps: Limits) -> Self {
        Self {
            dir,
            fingerprint,
            caps,
            ready: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, cid: &ContentId) -> Option<Arc<Prepared>> {
        self.ready.lock().ok()?.get(cid).cloned()
    }

    fn artifact_name(&self, cid: &ContentId) -> String {
        format!("{cid}-{}.cwasm", self.fingerprint)
    }

    /// Loads `bytes` as implementation `cid`: refuses bytes that do not hash to `cid`, then takes
    /// the component from memory, from disk, or compiles it.
    pub(crate) fn load(
        &self,
        engine: &wasmtime::Engine,
        linker: &Linker<TaskState>,
        cid: &ContentId,
        bytes: &[u8],
    ) -> Result<(Arc<Prepared>, LoadSource), HostError> {
        cid.verify(bytes)?;
        if let Some(p) = self.get(cid) {
            return Ok((p, LoadSource::Memory));
        }
        // Callers run on blocking threads (the compile itself blocks), so waiting here is fine.
        let flight = self
            .loading
            .lock()
            .map(|mut l| l.entry(*cid).or_default().clone())
            .unwrap_or_default();
        let _flight = flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = self.get(cid) {
            return Ok((p, LoadSource::Memory));
        }
        let loaded = self.load_once(engine, linker, cid, bytes);
        if let Ok(mut l) = self.loading.lock() {
            l.remove(cid);
        }
        loaded
    }

    /// The load proper, with no other load of `cid` in flight in this cache.
    fn load_once(
        &self,
        engine: &wasmtime::Engine,
        linker: &Linker<TaskState>,
        cid: &ContentId,
        bytes: &[u8],
    ) -> Result<(Arc<Prepared>, LoadSource), HostError> {
        check_declared_sizes(bytes, &self.caps)?;
        let (component, source) = match self.read_artifact(engine, cid) {
            Some(c) => (c, LoadSource::Disk),
            None => {
                let component = Component::new(engine, bytes)
                    .map_err(|e| HostError::InvalidComponent(format!("{e:#}")))?;
                (component, LoadSource::Compiled)
            }
        };
        check_imports(&component, engine)?;
        if source == LoadSource::Compiled {
            self.write_artifact(cid, &component);
        }
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| HostError::InvalidComponent(format!("cannot link: {e:#}")))?;
        let pre = CapabilityPre::new(instance_pre).map_err(|e| {
            HostError::InvalidComponent(format!("not a d402:capability component: {e:#}"))
        })?;
        let prepared = Arc::new(Prepared { pre });
        if let Ok(mut ready) = self.ready.lock() {
            ready.insert(*cid, prepared.clone());
        }
        Ok((prepared, source))
    }

    fn read_artifact(&self, engine: &wasmtime::Engine, cid: &ContentId) -> Option<Component> {
        use std::os::fd::AsRawFd;
        let dir = self.dir.as_ref()?;
        let name = self.artifact_name(cid);
        if !dir.is_file(&name) {
            return None;
        }
        // Mapped from the file itself rather than read into memory: wasmtime then takes the
        // linear-memory images straight from the file's pages instead of copying them into a
        // sealed memfd per load (sealing was seen to fail with EBUSY on a loaded machine, and
        // the copy costs time). The path goes through this process's handle on the folder, so it
        // names the same file the `Dir` would.
        let path = std::path::Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        // SAFETY: the artifact is native code that this node compiled and wrote into its own state
        // folder (reached only through this `Dir`; written to a temporary name and renamed, so
        // never seen half-written); wasmtime checks that it was produced by an engine with these
        // exact settings. Whoever can write the state folder can also replace the node's keys, so
        // it is trusted to the same degree.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(engine, &path) };
        component.ok()
    }

    fn write_artifact(&self, cid: &ContentId, component: &Component) {
        let Some(dir) = self.dir.as_ref() else { return };
        let Ok(bytes) = component.serialize() else {
            return;
        };
        let name = self.artifact_name(cid);
        let tmp = format!("{name}.tmp{}", std::process::id());
        let written = dir
            .create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| dir.rename(&tmp, dir, &name));
        if written.is_err() {
            // The cache is an optimisation: a failed write only means compiling again next time.
            let _ = dir.remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_match_by_exact_interface_and_compatible_version() {
        for ok in [
            "wasi:cli/environment@0.2.0",
            "wasi:cli/environment@0.2.12",
            "wasi:io/poll@0.2.3",
            "d402:capability/host@1.0.0",
        ] {
            check_import(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for unknown in [
            // A made-up interface inside a provided package: the prefix must not be enough.
            "wasi:cli/backdoor@0.2.0",
            "wasi:cli/environment-extra@0.2.0",
            "wasi:clocks/timezone@0.2.12",
            // Versions the host does not link.
            "wasi:cli/environment@0.2.13",
            "wasi:cli/environment@0.3.0",
            "wasi:cli/environment@1.0.0",
            "d402:capability/host@2.0.0",
            "d402:capability/host@1.1.0",
            "wasi:cli/environment@0.2.0-rc1",
            "wasi:cli/environment@0.2.01",
            "wasi:cli/environment",
            "wasi:cli",
            "d402:capability-extra/host@1.0.0",
            "d402:backdoor/shell",
            "",
        ] {
            match check_import(unknown) {
                Err(HostError::UnknownImport { name }) => assert_eq!(name, unknown),
                other => panic!("{unknown:?}: {other:?}"),
            }
        }
        assert!(matches!(
            check_import("wasi:http/outgoing-handler@0.2.0"),
            Err(HostError::ForbiddenImport { .. })
        ));
    }

    /// Every interface the allow-list names is really linked, so the list and the linker agree.
    #[test]
    fn every_provided_interface_is_linked() {
        let host = crate::Host::new(
            crate::HostConfig::default(),
            std::sync::Arc::new(d402_core::Identity::from_seed([7; 32])),
        )
        .expect("host");
        for package in PROVIDED {
            let (major, minor, patch) = package.version;
            for interface in package.interfaces {
                let name = format!("{}/{interface}@{major}.{minor}.{patch}", package.name);
                let wat = format!("(component (import \"{name}\" (instance)))");
                let component = Component::new(host.engine(), wat).expect("component");
                host.linker()
                    .instantiate_pre(&component)
                    .unwrap_or_else(|e| panic!("{name} is allowed but not linked: {e:#}"));
            }
        }
    }
}
