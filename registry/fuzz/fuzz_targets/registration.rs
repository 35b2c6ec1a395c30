//! The registration parser on arbitrary bytes: an error or a registration, never a panic; a
//! registration that parses survives its canonical form, and verifying it never panics.
#![no_main]

use d402_registry::Registration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(registration) = Registration::from_json(data) {
        let _ = registration.verify();
        let bytes = serde_json::to_vec(&registration).expect("serialises");
        let again = Registration::from_json(&bytes).expect("its canonical form parses");
        assert_eq!(again, registration);
    }
});

