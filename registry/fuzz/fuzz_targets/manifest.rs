//! The manifest parser on arbitrary bytes: an error or a manifest, never a panic; and a manifest
//! that parses re-parses from its own canonical form to the same value and CID.
#![no_main]

use d402_registry::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::from_json(data) {
        let (cid, bytes) = manifest.canonical().expect("a parsed manifest canonicalises");
        let again = Manifest::from_json(&bytes).expect("its canonical form parses");
        assert_eq!(again, manifest);
        assert_eq!(again.cid().expect("canonical"), cid);
    }
});
