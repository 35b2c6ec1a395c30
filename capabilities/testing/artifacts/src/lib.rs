//! Paths to the hostile test programs (guests that try to escape or exhaust the sandbox), built for
//! `wasm32-wasip2` by this crate's build script (reproducibly: see `d402-guest-build`). For tests
//! only: nothing a user runs depends on this crate.
//!
//! For each program there is a `<SNAKE_NAME>_COMPONENT` path constant, the [`HOSTILE`] table and the
//! [`foreach_hostile!`] macro, which calls a macro once per program so that a test file can require
//! one test per program:
//!
//! ```
//! macro_rules! assert_test_exists {
//!     ($name:ident) => {
//!         #[allow(unused_imports)]
//!         use self::$name as _;
//!     };
//! }
//! d402_test_artifacts::foreach_hostile!(assert_test_exists);
//! # fn endless_loop() {} fn memory_bomb() {} fn deep_recursion() {} fn huge_output() {}
//! # fn forbidden_egress() {} fn egress_flood() {} fn probe_sandbox() {} fn unknown_import() {}
//! # fn lookalike_import() {} fn sleeper() {} fn host_flood() {} fn malformed_scores() {}
//! # fn main() {}
//! ```

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
