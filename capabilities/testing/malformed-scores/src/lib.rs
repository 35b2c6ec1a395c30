//! A comparator that answers malformed scores: one row, whatever the number of candidates, with
//! a score over the maximum. The host runs it happily (it is well-behaved WASM); the validator's
//! contract check is what must refuse it.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct MalformedScores;

    impl Guest for MalformedScores {
        fn run(_input: String) -> Result<String, CapabilityError> {
            Ok(r#"{"scores":[[1000000,2000000]]}"#.to_string())
        }
    }

    export!(MalformedScores);
}
