//! A tiny HTTP/1.1 server on 127.0.0.1 for tests and benchmarks: it answers each request from a
//! closure given the request's head, and counts requests, so a test can also prove that *no*
//! request reached it (an egress refusal must happen before any connection).
//!
//! ```
//! use d402_loopback_server::{LoopbackServer, Reply};
//! let server = LoopbackServer::serving(b"<p>hi</p>".to_vec());
//! assert!(server.url("127.0.0.1", "/").starts_with("http://127.0.0.1:"));
//! assert_eq!(server.count(), 0);
//! let _custom = LoopbackServer::start(|head| {
//!     if head.starts_with("GET /missing") { Reply::NotFound } else { Reply::Html(b"ok".to_vec()) }
//! });
//! ```

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How to answer one request.
pub enum Reply {
    /// `200 OK` with a `text/html` body.
    Html(Vec<u8>),
    /// `404 Not Found`, empty body.
    NotFound,
    /// Accept the request and never answer (for timeouts); the connection is dropped after this long.
    Hang(Duration),
}

/// A running server; it lives until the test process ends.
pub struct LoopbackServer {
    pub port: u16,
    requests: Arc<AtomicUsize>,
}

impl LoopbackServer {
    /// Answers every request with `body`.
    pub fn serving(body: Vec<u8>) -> Self {
        let body = Arc::new(body);
        Self::start(move |_| Reply::Html(body.to_vec()))
    }

    /// Answers each request with what `answer` says for its head (request line and headers).
    pub fn start(answer: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counter = counter.clone();
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = match answer(&String::from_utf8_lossy(&head)) {
                        Reply::Html(body) => ("200 OK", body),
                        Reply::NotFound => ("404 Not Found", Vec::new()),
                        Reply::Hang(how_long) => {
                            std::thread::sleep(how_long);
                            return;
                        }
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                });
            }
        });
        Self { port, requests }
    }

    /// `http://{host}:{port}{path}`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}
