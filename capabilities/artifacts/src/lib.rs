//! Paths to the d402 capability components, built for `wasm32-wasip2` by this crate's build script
//! (reproducibly: see `d402-guest-build`). The hostile test programs are in `d402-test-artifacts`,
//! which only tests depend on.
//!
//! For each program there is a `<SNAKE_NAME>_COMPONENT` path constant, the [`CAPABILITIES`] table
//! and the [`foreach_capability!`] macro, which calls a macro once per program so that a test file
//! can require one test per program:
//!
//! ```
//! macro_rules! assert_test_exists {
//!     ($name:ident) => {
//!         #[allow(unused_imports)]
//!         use self::$name as _;
//!     };
//! }
//! d402_capability_artifacts::foreach_capability!(assert_test_exists);
//! # fn extract_metadata() {} fn merkle_verify() {} fn page_to_markdown() {}
//! # fn compare_text() {} fn compare_json() {}
//! # fn main() {}
//! ```

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
