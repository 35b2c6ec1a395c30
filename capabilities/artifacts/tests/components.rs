//! Every artifact exists and is a WebAssembly component, and each program has a test here: adding a
//! program without adding its test fails to compile. The hostile programs come from
//! `d402-test-artifacts`, built by the same build helper.

/// Every component, capabilities first.
fn all_programs() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    CAPABILITIES.iter().chain(HOSTILE)
}

use d402_capability_artifacts::{CAPABILITIES, foreach_capability};
use d402_test_artifacts::{HOSTILE, foreach_hostile};
use wasmparser::{ComponentExternalKind, ComponentTypeRef, Parser, Payload};

/// `\0asm`, then the component layer: version 0x0d, layer 1.
const COMPONENT_MAGIC: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
foreach_capability!(assert_test_exists);
foreach_hostile!(assert_test_exists);

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The names of the component's top-level interface and function imports (not the type imports a
/// world's `use` creates) and of its interface and function exports.
fn component_imports_exports(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.expect("valid wasm") {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.expect("import");
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        imports.push(import.name.0.to_owned());
                    }
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    let export = export.expect("export");
                    if export.kind == ComponentExternalKind::Instance
                        || export.kind == ComponentExternalKind::Func
                    {
                        exports.push(export.name.0.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

fn assert_component(path: &str) -> Vec<u8> {
    let bytes = read(path);
    assert!(bytes.len() > 8, "{path} is too small");
    assert_eq!(bytes[..8], COMPONENT_MAGIC, "{path} is not a component");
    bytes
}

/// The checks every d402-world program gets: a component that exports `run` and imports only WASI
/// and `d402:capability`.
fn assert_d402_world(path: &str) {
    let (imports, exports) = component_imports_exports(&assert_component(path));
    assert!(
        exports.iter().any(|e| e == "run"),
        "{path} exports {exports:?}"
    );
    for import in &imports {
        assert!(
            import.starts_with("wasi:") || import.starts_with("d402:capability/"),
            "{path} imports {import}"
        );
    }
}

#[test]
fn tables_are_consistent() {
    assert!(!CAPABILITIES.is_empty() && !HOSTILE.is_empty());
    assert!(CAPABILITIES.iter().all(|(_, id, _)| id.contains('@')));
    assert!(HOSTILE.iter().all(|(_, id, _)| id.is_empty()));
    for (package, _, path) in all_programs() {
        assert!(path.ends_with(".wasm"), "{package}: {path}");
        assert_component(path);
    }
}

fn page_to_markdown() {
    assert_d402_world(d402_capability_artifacts::PAGE_TO_MARKDOWN_COMPONENT);
}
fn merkle_verify() {
    let path = d402_capability_artifacts::MERKLE_VERIFY_COMPONENT;
    assert_d402_world(path);
    // It is pure: the host import is not even linked.
    let (imports, _) = component_imports_exports(&read(path));
    assert!(
        !imports
            .iter()
            .any(|i| i.starts_with("d402:capability/host")),
        "{imports:?}"
    );
}
fn extract_metadata() {
    assert_d402_world(d402_capability_artifacts::EXTRACT_METADATA_COMPONENT);
}
/// Comparators must be pure (exactly re-executable): no host import at all.
fn assert_pure(path: &str) {
    assert_d402_world(path);
    let (imports, _) = component_imports_exports(&read(path));
    assert!(
        !imports
            .iter()
            .any(|i| i.starts_with("d402:capability/host")),
        "{imports:?}"
    );
}
fn compare_text() {
    assert_pure(d402_capability_artifacts::COMPARE_TEXT_COMPONENT);
}
fn compare_json() {
    assert_pure(d402_capability_artifacts::COMPARE_JSON_COMPONENT);
}
fn malformed_scores() {
    assert_d402_world(d402_test_artifacts::MALFORMED_SCORES_COMPONENT);
}
fn endless_loop() {
    assert_d402_world(d402_test_artifacts::ENDLESS_LOOP_COMPONENT);
}
fn memory_bomb() {
    assert_d402_world(d402_test_artifacts::MEMORY_BOMB_COMPONENT);
}
fn deep_recursion() {
    assert_d402_world(d402_test_artifacts::DEEP_RECURSION_COMPONENT);
}
fn huge_output() {
    assert_d402_world(d402_test_artifacts::HUGE_OUTPUT_COMPONENT);
}
fn forbidden_egress() {
    assert_d402_world(d402_test_artifacts::FORBIDDEN_EGRESS_COMPONENT);
}
fn egress_flood() {
    assert_d402_world(d402_test_artifacts::EGRESS_FLOOD_COMPONENT);
}
fn probe_sandbox() {
    assert_d402_world(d402_test_artifacts::PROBE_SANDBOX_COMPONENT);
}
fn unknown_import() {
    let path = d402_test_artifacts::UNKNOWN_IMPORT_COMPONENT;
    let (imports, exports) = component_imports_exports(&assert_component(path));
    assert!(exports.iter().any(|e| e == "run"), "{exports:?}");
    assert!(
        imports.iter().any(|i| i.starts_with("d402:backdoor/shell")),
        "{path} should import the backdoor, imports {imports:?}"
    );
}

fn lookalike_import() {
    let path = d402_test_artifacts::LOOKALIKE_IMPORT_COMPONENT;
    let (imports, exports) = component_imports_exports(&assert_component(path));
    assert!(exports.iter().any(|e| e == "run"), "{exports:?}");
    // A made-up interface inside a real WASI package: only exact matching refuses it.
    assert!(
        imports.iter().any(|i| i == "wasi:cli/backdoor@0.2.0"),
        "{path} should import the lookalike, imports {imports:?}"
    );
}
fn sleeper() {
    let path = d402_test_artifacts::SLEEPER_COMPONENT;
    assert_d402_world(path);
    let (imports, _) = component_imports_exports(&read(path));
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:clocks/monotonic-clock@")),
        "{imports:?}"
    );
}
fn host_flood() {
    let path = d402_test_artifacts::HOST_FLOOD_COMPONENT;
    assert_d402_world(path);
    let (imports, _) = component_imports_exports(&read(path));
    for wanted in [
        "d402:capability/host@",
        "wasi:random/random@",
        "wasi:random/insecure@",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(wanted)),
            "{wanted}: {imports:?}"
        );
    }
}

macro_rules! run_all {
    ($name:ident) => {
        $name();
    };
}

#[test]
fn every_capability_is_a_d402_component() {
    foreach_capability!(run_all);
}

#[test]
fn every_hostile_program_is_a_component() {
    foreach_hostile!(run_all);
}

/// Prints what each component imports (`cargo test -p d402-capability-artifacts -- --nocapture`):
/// the host must provide exactly these, and nothing else.
#[test]
fn list_imports() {
    for (package, _, path) in all_programs() {
        let (imports, _) = component_imports_exports(&read(path));
        println!("{package}: {}", imports.join(" "));
    }
}
