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

use crate::content_id::ContentId;
use crate::error::HostError;
use crate::task::{CapabilityPre, TaskState};

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
    ready: Mutex<HashMap<ContentId, Arc<Prepared>>>,
    /// One lock per CID being loaded, so that tasks arriving while a component compiles wait for
    /// that compile instead of each compiling it again (a 4.5 MB component takes seconds, and
    /// eight concurrent first tasks used to compile it eight times over).
    loading: Mutex<HashMap<ContentId, Arc<Mutex<()>>>>,
}

/// Interfaces a capability may import. Anything else is refused before the component runs.
const PROVIDED: &[&str] = &[
    "d402:capability/host",
    "d402:capability/types",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:io/",
    "wasi:random/",
    "wasi:filesystem/",
    // Linked so that a std program that mentions sockets can load, but every socket operation is
    // refused by the sandbox (no TCP, no UDP, no name lookup).
    "wasi:sockets/",
];

/// Known interfaces that d402 deliberately does not give capabilities: all HTTP goes through
/// `d402:capability/host.fetch`, where the egress policy and evidence recording apply.
const FORBIDDEN: &[&str] = &["wasi:http/"];

fn check_imports(component: &Component, engine: &wasmtime::Engine) -> Result<(), HostError> {
    for (name, _) in component.component_type().imports(engine) {
        if FORBIDDEN.iter().any(|p| name.starts_with(p)) {
            return Err(HostError::ForbiddenImport {
                name: name.to_string(),
            });
        }
        if !PROVIDED.iter().any(|p| name.starts_with(p)) {
            return Err(HostError::UnknownImport {
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

impl ComponentCache {
    pub(crate) fn new(dir: Option<Dir>, fingerprint: String) -> Self {
        Self {
            dir,
            fingerprint,
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
        let dir = self.dir.as_ref()?;
        let bytes = dir.read(self.artifact_name(cid)).ok()?;
        // SAFETY: the artifact is native code that this node compiled and wrote into its own state
        // folder (reached only through this `Dir`); wasmtime checks that it was produced by an
        // engine with these exact settings. Whoever can write the state folder can also replace the
        // node's keys, so it is trusted to the same degree.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &bytes) };
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
