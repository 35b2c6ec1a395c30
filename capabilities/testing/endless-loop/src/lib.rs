//! Loops forever without calling the host: only fuel or epoch interruption can stop it.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct EndlessLoop;

    impl Guest for EndlessLoop {
        fn run(input: String) -> Result<String, CapabilityError> {
            let mut counter = input.len() as u64;
            loop {
                // black_box keeps the optimiser from proving the loop has no effect.
                counter =
                    std::hint::black_box(counter.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }

    export!(EndlessLoop);
}
