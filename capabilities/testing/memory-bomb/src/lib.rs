//! Keeps allocating (and touching) 1 MiB blocks until the allocator is refused: the host's memory
//! limit must stop it without affecting the node.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct MemoryBomb;

    const BLOCK: usize = 1 << 20;

    impl Guest for MemoryBomb {
        fn run(_input: String) -> Result<String, CapabilityError> {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Writing to every page makes the memory real, not just reserved.
                let block = vec![0xA5u8; BLOCK];
                hoard.push(std::hint::black_box(block));
                if hoard.len() == usize::MAX {
                    return Ok(format!("{{\"blocks\":{}}}", hoard.len()));
                }
            }
        }
    }

    export!(MemoryBomb);
}
