//! The namespace-proof document parser on arbitrary bytes: never a panic.
#![no_main]

use d402_registry::namespace::NamespaceProofDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = NamespaceProofDocument::from_json(data);
});
