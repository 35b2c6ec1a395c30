//! The build script of the two artifact crates: builds one set of guest programs under
//! `capabilities/` (the capabilities, or the hostile test programs under `capabilities/testing/`)
//! for `wasm32-wasip2` with a nested `cargo build`, in the spirit of wasmtime's
//! `crates/test-programs/artifacts/build.rs`, and writes `OUT_DIR/artifacts.rs`: one path constant
//! per component, a table and a `foreach_*` macro.
//!
//! Two crates, so that nothing a user runs depends on the hostile programs:
//! `d402-capability-artifacts` (the capabilities, which `d402 devnet` publishes) and
//! `d402-test-artifacts` (the hostile programs, a dev-dependency of the tests only).
//!
//! The nested build is reproducible: the same source and toolchain give the same bytes wherever the
//! repository is cloned and wherever `CARGO_HOME` is, because every absolute path that could reach the
//! binary is remapped and the release profile is pinned (one codegen unit, fat LTO, no debug info,
//! stripped).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// A guest program found under `capabilities/`.
struct Program {
    /// The package name, e.g. `d402-cap-page-to-markdown`.
    package: String,
    /// The directory name in snake case, e.g. `page_to_markdown`: the macro argument.
    snake: String,
    /// The capability id and version from `[package.metadata.d402]`, or "" for hostile programs.
    capability: String,
    hostile: bool,
    /// The library target's name, which names the `.wasm` file.
    lib_name: String,
}

/// Which guest programs an artifact crate builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// The capabilities: every guest under `capabilities/` outside `testing/`.
    Capabilities,
    /// The hostile test programs under `capabilities/testing/`.
    Hostile,
}

/// Runs as the calling crate's build script (`fn main() { d402_guest_build::main(Set::…) }`).
pub fn main(set: Set) {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .ancestors()
        .find(|d| fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")))
        .expect("the workspace root above the artifact crate")
        .to_path_buf();
    let capabilities_dir = workspace.join("capabilities");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    // Every source file, listed one by one: a directory given to `rerun-if-changed` was seen not to
    // notice an edited file inside it, which left stale components behind.
    for dir in [&capabilities_dir, &workspace.join("wit")] {
        println!("cargo:rerun-if-changed={}", dir.display());
        for file in source_files(dir) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let sysroot = rustc_print(&rustc, &["--print", "sysroot"]);
    require_target(&rustc, &sysroot);

    let programs: Vec<Program> = discover(&cargo, &workspace, &capabilities_dir)
        .into_iter()
        .filter(|p| p.hostile == (set == Set::Hostile))
        .collect();
    // A target dir of our own: the outer build holds the lock on its own, so sharing would deadlock.
    let target_dir = out_dir.join("wasm-target");
    build(&cargo, &workspace, &target_dir, &sysroot, &programs);

    let release = target_dir.join(TARGET).join("release");
    let generated = generate(&programs, &release);
    fs::write(out_dir.join("artifacts.rs"), generated).expect("write artifacts.rs");
}

fn rustc_print(rustc: &str, args: &[&str]) -> String {
    let out = Command::new(rustc)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {rustc} {args:?}: {e}"));
    assert!(out.status.success(), "{rustc} {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn require_target(rustc: &str, sysroot: &str) {
    let libdir = Path::new(sysroot)
        .join("lib")
        .join("rustlib")
        .join(TARGET)
        .join("lib");
    let has_std = fs::read_dir(&libdir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false);
    if !has_std {
        panic!(
            "\n\nThe Rust target {TARGET} is not installed for {rustc} (no std under {}).\n\
             Install it with:\n\n    rustup target add {TARGET}\n\n",
            libdir.display()
        );
    }
}

/// Finds the guest programs: workspace members under `capabilities/` with a `cdylib` target.
fn discover(cargo: &str, workspace: &Path, capabilities_dir: &Path) -> Vec<Program> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--offline",
    ])
    .current_dir(workspace);
    scrub_env(&mut cmd);
    let out = cmd.output().expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let testing_dir = capabilities_dir.join("testing");

    let mut programs = Vec::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest.parent().expect("package dir");
        if !dir.starts_with(capabilities_dir) {
            continue;
        }
        let Some(lib) = package["targets"].as_array().and_then(|targets| {
            targets.iter().find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|types| types.iter().any(|c| c == "cdylib"))
            })
        }) else {
            continue;
        };
        let hostile = dir.starts_with(&testing_dir);
        let package_name = package["name"].as_str().expect("name").to_owned();
        let capability = package["metadata"]["d402"]["capability"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            hostile || !capability.is_empty(),
            "{package_name}: a capability crate needs [package.metadata.d402] capability = \"id@version\""
        );
        let dir_name = dir.file_name().expect("dir name").to_string_lossy();
        programs.push(Program {
            package: package_name,
            snake: dir_name.replace('-', "_"),
            capability,
            hostile,
            lib_name: lib["name"].as_str().expect("target name").replace('-', "_"),
        });
    }
    // Stable order, whatever cargo metadata lists first.
    programs.sort_by(|a, b| (a.hostile, &a.snake).cmp(&(b.hostile, &b.snake)));
    programs
}

/// Environment the outer cargo sets that must not leak into the nested build.
fn scrub_env(cmd: &mut Command) {
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_LTO",
        "CARGO_PROFILE_RELEASE_CODEGEN_UNITS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_PROFILE_RELEASE_STRIP",
        "CARGO_PROFILE_RELEASE_OPT_LEVEL",
        "CARGO_PROFILE_RELEASE_PANIC",
        "CARGO_PROFILE_RELEASE_INCREMENTAL",
        "CARGO_INCREMENTAL",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
}

fn cargo_home() -> Option<PathBuf> {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

fn build(cargo: &str, workspace: &Path, target_dir: &Path, sysroot: &str, programs: &[Program]) {
    // Later remappings win when several match, so the most specific prefixes come last.
    let mut remaps = vec![format!("{}=/d402", workspace.display())];
    if let Some(home) = cargo_home() {
        remaps.push(format!("{}=/cargo", home.display()));
    }
    remaps.push(format!("{sysroot}=/rustc"));
    // Build scripts' OUT_DIRs (include!d generated code) live under the nested target dir.
    remaps.push(format!("{}=/target", target_dir.display()));
    let rustflags = remaps
        .iter()
        .map(|r| format!("--remap-path-prefix={r}"))
        .collect::<Vec<_>>()
        .join("\x1f");

    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET]);
    if workspace.join("Cargo.lock").exists() {
        cmd.arg("--locked");
    }
    for program in programs {
        cmd.args(["-p", &program.package]);
    }
    scrub_env(&mut cmd);
    cmd.env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    let status = cmd.status().expect("running the nested cargo build");
    assert!(status.success(), "nested cargo build for {TARGET} failed");
}

fn generate(programs: &[Program], release: &Path) -> String {
    let mut code = String::from("// Generated by capabilities/guest-build.\n\n");
    for program in programs {
        let path = release.join(format!("{}.wasm", program.lib_name));
        assert!(
            path.exists(),
            "{} was not built at {}",
            program.package,
            path.display()
        );
        let kind = if program.hostile {
            "Hostile test program".to_owned()
        } else {
            format!("Capability `{}`", program.capability)
        };
        writeln!(
            code,
            "/// {kind}: the component built from `{}`.\npub const {}_COMPONENT: &str = {:?};\n",
            program.package,
            program.snake.to_uppercase(),
            path.display().to_string()
        )
        .expect("write to String");
    }

    let table = |code: &mut String, name: &str, doc: &str| {
        writeln!(
            code,
            "/// {doc}: `(package, capability id@version or \"\", component path)`.\npub const {name}: &[(&str, &str, &str)] = &["
        )
        .expect("write to String");
        for program in programs {
            writeln!(
                code,
                "    ({:?}, {:?}, {}_COMPONENT),",
                program.package,
                program.capability,
                program.snake.to_uppercase()
            )
            .expect("write to String");
        }
        code.push_str("];\n\n");
    };
    let hostile = programs.first().is_some_and(|p| p.hostile);
    if hostile {
        table(&mut code, "HOSTILE", "Every hostile test program");
    } else {
        table(&mut code, "CAPABILITIES", "Every capability component");
    }

    let foreach = |code: &mut String, name: &str, doc: &str| {
        writeln!(
            code,
            "/// {doc}\n#[macro_export]\nmacro_rules! {name} {{\n    ($mac:ident) => {{"
        )
        .expect("write to String");
        for program in programs {
            writeln!(code, "        $mac!({});", program.snake).expect("write to String");
        }
        code.push_str("    };\n}\n\n");
    };
    if hostile {
        foreach(
            &mut code,
            "foreach_hostile",
            "Calls `$mac!(snake_name)` once per hostile test program.",
        );
    } else {
        foreach(
            &mut code,
            "foreach_capability",
            "Calls `$mac!(snake_name)` once per capability component.",
        );
    }
    code
}

/// Files under `dir` that can change a component: everything but build outputs and hidden entries.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "fuzz" {
            continue;
        }
        if path.is_dir() {
            files.extend(source_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}
