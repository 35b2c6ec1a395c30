//! The corpus of real HTML pages that d402's determinism tests, CLI tests and benchmarks share: the
//! chapters of the Rust book that ship with the toolchain (`rustup component add rust-docs`), so the
//! same pages are on every machine. One definition, so every test and benchmark means the same pages.

use std::path::{Path, PathBuf};

/// `$(rustc --print sysroot)/share/doc/rust/html`.
pub fn rust_doc_root() -> PathBuf {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc --print sysroot");
    let sysroot = String::from_utf8(out.stdout).expect("a UTF-8 sysroot path");
    Path::new(sysroot.trim()).join("share/doc/rust/html")
}

/// The first `n` chapter pages (`book/ch*.html`) in name order.
///
/// Panics, naming the folder, if the rust-docs component is missing or has fewer pages.
pub fn book_pages(n: usize) -> Vec<PathBuf> {
    let dir = rust_doc_root().join("book");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `rustup component add rust-docs`)",
                dir.display()
            )
        })
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

/// The URL a book page is published at, which tests use as its snapshot URL.
pub fn book_url(page: &Path) -> String {
    let name = page
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    format!("https://doc.rust-lang.org/book/{name}")
}
