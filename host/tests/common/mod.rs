//! Shared test fixtures: a host, component loading, and a tiny loopback HTTP server.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with `body` and counts requests.
pub struct LoopbackServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
}

impl LoopbackServer {
    pub fn start(body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let body = body.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                });
            }
        });
        Self { port, requests }
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

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
