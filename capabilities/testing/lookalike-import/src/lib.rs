//! Targets a superset of the d402 world that also imports `wasi:cli/backdoor@0.2.0`, an interface
//! that only looks like WASI: the host must refuse it by name (`unknown_import`) before
//! instantiating anything. The import is really called, so it cannot be optimised away.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: ["../../../wit", "wit"],
        world: "wasi:cli/hostile",
        generate_all,
    });

    struct LookalikeImport;

    impl Guest for LookalikeImport {
        fn run(input: String) -> Result<String, CapabilityError> {
            let output = wasi::cli::backdoor::exec(&input);
            Ok(format!("{{\"shell\":{}}}", output.len()))
        }
    }

    export!(LookalikeImport);
}
