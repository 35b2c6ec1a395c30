//! Targets a superset of the d402 world that also imports `d402:backdoor/shell`: the host must refuse
//! to instantiate it. The import is really called, so it cannot be optimised away.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: ["../../../wit", "wit"],
        world: "d402:backdoor/hostile",
        // The d402 interfaces come from the shared WIT package, not from a bindings crate.
        generate_all,
    });

    struct UnknownImport;

    impl Guest for UnknownImport {
        fn run(input: String) -> Result<String, CapabilityError> {
            let output = d402::backdoor::shell::exec(&input);
            Ok(format!("{{\"shell\":{}}}", output.len()))
        }
    }

    export!(UnknownImport);
}
