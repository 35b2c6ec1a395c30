//! Returns a ~64 MiB string: the host must refuse outputs above its cap.

/// How many bytes of output to produce.
pub const OUTPUT_BYTES: usize = 64 << 20;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct HugeOutput;

    impl Guest for HugeOutput {
        fn run(_input: String) -> Result<String, CapabilityError> {
            // A JSON string literal: valid output except for its size.
            let mut out = String::with_capacity(crate::OUTPUT_BYTES + 2);
            out.push('"');
            out.extend(std::iter::repeat_n('x', crate::OUTPUT_BYTES));
            out.push('"');
            Ok(out)
        }
    }

    export!(HugeOutput);
}
