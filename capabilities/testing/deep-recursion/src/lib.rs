//! Recurses without bound, and not in tail position, so the shadow stack overflows.

/// Non-tail recursion with a frame the optimiser cannot remove.
#[inline(never)]
#[allow(unconditional_recursion)] // the point of the program
pub fn descend(depth: u64, pad: [u64; 16]) -> u64 {
    let mut next = std::hint::black_box(pad);
    next[(depth % 16) as usize] = depth;
    let below = descend(depth.wrapping_add(1), next);
    // Using the result after the call keeps this out of tail position.
    below.wrapping_add(next[0])
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct DeepRecursion;

    impl Guest for DeepRecursion {
        fn run(input: String) -> Result<String, CapabilityError> {
            let total = crate::descend(input.len() as u64, [1; 16]);
            Ok(format!("{{\"total\":{total}}}"))
        }
    }

    export!(DeepRecursion);
}
