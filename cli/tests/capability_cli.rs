//! `d402 keys`, `d402 namespace proof` and `d402 capability …` through the real binary.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Command, Output};

use d402_capability_artifacts as artifacts;
use d402_core::ContentId;
use d402_host::ContentStore;
use serde_json::Value;

/// Runs `d402` and remembers everything it printed, so a test can check no secret ever appears.
struct Cli {
    dir: tempfile::TempDir,
    printed: RefCell<Vec<String>>,
}

impl Cli {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            printed: RefCell::new(Vec::new()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_d402"));
        cmd.args(args).current_dir(self.dir.path());
        cmd.env_remove("D402_MAX_CREATOR_COMMISSION_BPS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running d402");
        let mut printed = self.printed.borrow_mut();
        printed.push(String::from_utf8_lossy(&out.stdout).into_owned());
        printed.push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs a command that must succeed and returns its stdout as JSON.
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "d402 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Runs a command that must fail with one `error: …` line, and returns that line.
    fn fails(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run_env(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "d402 {args:?} should fail");
        assert!(out.stdout.is_empty(), "no output on failure: {args:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        lines[0].to_string()
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn write_json(&self, name: &str, value: &Value) -> String {
        self.write(name, serde_json::to_vec_pretty(value).unwrap())
    }

    fn public_key(&self, role: &str, state: &str) -> String {
        let out = self.ok(&["keys", "generate", "--role", role, "--state", state]);
        assert_eq!(out["role"], role);
        let key = out["publicKey"].as_str().unwrap().to_string();
        assert!(key.starts_with("ed25519:"));
        key
    }

    /// Every secret key file under the test folder.
    fn secrets(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "key") {
                    found.push(std::fs::read_to_string(&path).unwrap().trim().to_string());
                }
            }
        }
        found
    }
}

const SOLANA: &str = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T";
const EVM_SEED: &str = "0x000000000000000000000000000000000000c0de";
const EVM_CHECKSUMMED: &str = "0x000000000000000000000000000000000000c0DE";

/// A publisher and the `example` namespace owner, a manifest for the merkle component, the
/// owner's proof for the publisher, and a signed registration with 1000 bps commission.
struct Published {
    cli: Cli,
    owner: String,
    publisher: String,
    manifest: String,
    registration: String,
}

fn publish() -> Published {
    let cli = Cli::new();
    let publisher = cli.public_key("publisher", "state/publisher");
    let owner = cli.public_key("publisher", "state/example-owner");

    // template (with the real component's CID) → validate
    let template = cli.ok(&[
        "capability",
        "template",
        "--id",
        "example.merkle_check",
        "--version",
        "1",
        "--wasm",
        artifacts::MERKLE_VERIFY_COMPONENT,
    ]);
    let component = std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap();
    let implementation = ContentId::of(&component).to_string();
    assert_eq!(template["implementation"]["cid"], implementation.as_str());
    let manifest = cli.write_json("capability.json", &template);
    let valid = cli.ok(&["capability", "validate", "--file", &manifest]);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["capability"], "example.merkle_check@1");
    assert_eq!(valid["implementation"], implementation.as_str());

    // the namespace owner vouches for the publisher
    let proof = cli.ok(&[
        "namespace",
        "proof",
        "--namespace",
        "example",
        "--publisher",
        &publisher,
        "--state",
        "state/example-owner",
    ]);
    assert_eq!(proof["owner"], owner.as_str());
    let proof = cli.write_json("example.proof.json", &proof);

    // register, with the component checked against the manifest and stored
    let registration = cli.ok(&[
        "capability",
        "register",
        "--file",
        &manifest,
        "--state",
        "state/publisher",
        "--namespace",
        "example",
        "--namespace-proof",
        &proof,
        "--creator-commission-bps",
        "1000",
        "--creator-solana-wallet",
        SOLANA,
        "--creator-evm-wallet",
        EVM_SEED,
        "--wasm",
        artifacts::MERKLE_VERIFY_COMPONENT,
    ]);
    assert_eq!(registration["manifest"], valid["manifest"]);
    assert_eq!(registration["publisher"], publisher.as_str());
    assert_eq!(registration["creatorCommissionBps"], 1000);
    assert_eq!(registration["creatorWallets"]["evm"], EVM_CHECKSUMMED);
    let registration = cli.write_json("capability.registration.json", &registration);
    Published {
        cli,
        owner,
        publisher,
        manifest,
        registration,
    }
}

/// Seed 001's flow end to end: template → validate → register → inspect.
#[test]
fn round_trip_template_validate_register_inspect() {
    let p = publish();
    let cli = &p.cli;

    let store = ContentStore::open_path(&cli.path("state/publisher")).unwrap();
    let component = std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap();
    assert_eq!(
        store.get(&ContentId::of(&component)).unwrap(),
        Some(component)
    );

    let terms = cli.ok(&[
        "capability",
        "inspect",
        &p.registration,
        "--manifest",
        &p.manifest,
    ]);
    assert_eq!(terms["signature"], "valid");
    assert_eq!(terms["manifestChecked"], true);
    assert_eq!(terms["publisher"], p.publisher.as_str());
    assert_eq!(terms["namespace"], "example");
    assert_eq!(terms["namespaceOwner"], p.owner.as_str());
    assert_eq!(terms["creatorCommissionBps"], 1000);
    assert_eq!(terms["creatorWallets"]["solana"], SOLANA);
    assert_eq!(terms["capability"], "example.merkle_check@1");
    let reg: Value = serde_json::from_slice(&std::fs::read(&p.registration).unwrap()).unwrap();
    let reg_cid = ContentId::of(&d402_core::content_id::canonical_json(&reg).unwrap());
    assert_eq!(terms["registration"], reg_cid.to_string().as_str());
    assert!(store.get(&reg_cid).unwrap().is_some());
    drop(store); // redb holds a lock; the CLI opens the store next.

    // The manifest can come from the content store instead, and the gateway policy accepts.
    let trust = format!("example={}", p.owner);
    let accepted = cli.ok(&[
        "capability",
        "inspect",
        &p.registration,
        "--state",
        "state/publisher",
        "--trust-namespace",
        &trust,
        "--rail",
        "solana",
        "--rail",
        "evm",
        "--accept-implementation",
        terms["implementation"].as_str().unwrap(),
    ]);
    assert_eq!(accepted["policy"], "accepted");
    assert_eq!(accepted["manifestChecked"], true);
}

/// The component must be the bytes the manifest names: another component, or one flipped byte.
#[test]
fn register_refuses_a_component_that_is_not_the_manifests() {
    let p = publish();
    let cli = &p.cli;
    let mut bytes = std::fs::read(artifacts::MERKLE_VERIFY_COMPONENT).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let flipped = cli.write("flipped.wasm", &bytes);
    for wasm in [artifacts::PAGE_TO_MARKDOWN_COMPONENT, flipped.as_str()] {
        let err = cli.fails(
            &[
                "capability",
                "register",
                "--file",
                &p.manifest,
                "--state",
                "state/publisher",
                "--namespace",
                "example",
                "--creator-commission-bps",
                "0",
                "--wasm",
                wasm,
            ],
            &[],
        );
        assert!(err.contains("implementation CID mismatch"), "{err}");
    }
}

/// Any one edited term of a registration, or an edited manifest, is caught by `inspect`.
#[test]
fn tampering_is_detected_by_inspect() {
    let p = publish();
    let cli = &p.cli;
    let original: Value = serde_json::from_slice(&std::fs::read(&p.registration).unwrap()).unwrap();
    let edits: Vec<(&str, Value)> = vec![
        ("/creatorCommissionBps", Value::from(1500)),
        (
            "/creatorWallets/solana",
            Value::from("11111111111111111111111111111111"),
        ),
        (
            "/creatorWallets/evm",
            Value::from("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        ),
        (
            "/manifest",
            Value::from(ContentId::of(b"another manifest").to_string()),
        ),
        ("/namespace", Value::from("exampel")),
        ("/issuedAt", Value::from(1)),
    ];
    for (path, value) in edits {
        let mut edited = original.clone();
        *edited.pointer_mut(path).unwrap() = value;
        let file = cli.write_json("tampered.json", &edited);
        let err = cli.fails(&["capability", "inspect", &file], &[]);
        assert!(
            err.contains("registration signature: signature does not verify"),
            "{path}: {err}"
        );
    }

    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&p.manifest).unwrap()).unwrap();
    manifest["limits"]["fuel"] = Value::from(1);
    let edited = cli.write_json("tampered-manifest.json", &manifest);
    let err = cli.fails(
        &[
            "capability",
            "inspect",
            &p.registration,
            "--manifest",
            &edited,
        ],
        &[],
    );
    assert!(err.contains("manifest CID mismatch"), "{err}");
}

/// Gateway policy from the command line: the default cap, a lower cap from the environment, and
/// an `example.*` registration without the `example` owner's proof.
#[test]
fn policy_refusals_from_the_cli() {
    let p = publish();
    let cli = &p.cli;
    let trust = format!("example={}", p.owner);
    let register = |bps: &str, proof: bool| {
        let mut args = vec![
            "capability",
            "register",
            "--file",
            &p.manifest,
            "--state",
            "state/publisher",
            "--namespace",
            "example",
            "--creator-commission-bps",
            bps,
            "--creator-solana-wallet",
            SOLANA,
            "--creator-evm-wallet",
            EVM_CHECKSUMMED,
        ];
        if proof {
            args.extend(["--namespace-proof", "example.proof.json"]);
        }
        cli.write_json(&format!("reg-{bps}-{proof}.json"), &cli.ok(&args))
    };
    let check = |file: &str| {
        vec![
            "capability".to_string(),
            "inspect".into(),
            file.to_string(),
            "--manifest".into(),
            p.manifest.clone(),
            "--trust-namespace".into(),
            trust.clone(),
            "--rail".into(),
            "solana".into(),
            "--rail".into(),
            "evm".into(),
        ]
    };
    let at_cap = register("2000", true);
    let over_cap = register("2001", true);
    let args = check(&at_cap);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(cli.ok(&args)["policy"], "accepted");
    let over = check(&over_cap);
    let over: Vec<&str> = over.iter().map(String::as_str).collect();
    let err = cli.fails(&over, &[]);
    assert!(
        err.contains("2001 bps is above this gateway's cap of 2000"),
        "{err}"
    );
    let err = cli.fails(&args, &[("D402_MAX_CREATOR_COMMISSION_BPS", "1500")]);
    assert!(err.contains("cap of 1500"), "{err}");

    // Without --namespace-proof the publisher vouches for itself: not the `example` owner.
    let self_vouched = register("1000", false);
    let args = check(&self_vouched);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = cli.fails(&args, &[]);
    assert!(err.contains("namespace \"example\" is owned by"), "{err}");
}

/// Malformed input: one line, naming the field, never a panic.
#[test]
fn malformed_inputs_give_one_line_errors_naming_the_field() {
    let p = publish();
    let cli = &p.cli;
    let manifest: Value = serde_json::from_slice(&std::fs::read(&p.manifest).unwrap()).unwrap();
    let with = |path: &str, value: Value| {
        let mut m = manifest.clone();
        *m.pointer_mut(path).unwrap() = value;
        cli.write_json("bad.json", &m)
    };
    let validate = |file: &str| cli.fails(&["capability", "validate", "--file", file], &[]);

    let err = validate(&cli.write("bad.json", "{\"id\": "));
    assert!(err.contains("not valid JSON"), "{err}");
    let err = validate(&with("/version", Value::from("one")));
    assert!(err.contains("/version"), "{err}");
    let err = validate(&with("/limits/fuel", Value::from("lots")));
    assert!(err.contains("/limits/fuel"), "{err}");
    let err = validate(&with("/validation/class", Value::from("vibes")));
    assert!(err.contains("/validation/class"), "{err}");
    let err = validate(&with("/id", Value::from("Example.X")));
    assert!(err.contains("/id"), "{err}");
    let mut big = manifest.clone();
    big["description"] = Value::from("x".repeat(10 * 1024 * 1024));
    let err = validate(&cli.write_json("bad.json", &big));
    assert!(err.contains("limit"), "{err}");

    let register = |solana: &str, evm: &str| {
        cli.fails(
            &[
                "capability",
                "register",
                "--file",
                &p.manifest,
                "--state",
                "state/publisher",
                "--namespace",
                "example",
                "--creator-commission-bps",
                "1000",
                "--creator-solana-wallet",
                solana,
                "--creator-evm-wallet",
                evm,
            ],
            &[],
        )
    };
    let err = register("0OIl-not-base58", EVM_CHECKSUMMED);
    assert!(err.contains("/creatorWallets/solana"), "{err}");
    let err = register(SOLANA, "0xnothex00000000000000000000000000000000000");
    assert!(err.contains("/creatorWallets/evm"), "{err}");
    let err = register(SOLANA, "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    assert!(
        err.contains("/creatorWallets/evm") && err.contains("checksum"),
        "{err}"
    );

    let mut reg: Value = serde_json::from_slice(&std::fs::read(&p.registration).unwrap()).unwrap();
    reg["creatorCommissionBps"] = Value::from("ten percent");
    let err = cli.fails(
        &[
            "capability",
            "inspect",
            &cli.write_json("bad-reg.json", &reg),
        ],
        &[],
    );
    assert!(err.contains("/creatorCommissionBps"), "{err}");

    // No publisher key: say how to make one.
    let err = cli.fails(
        &[
            "capability",
            "register",
            "--file",
            &p.manifest,
            "--state",
            "state/nobody",
            "--namespace",
            "example",
            "--creator-commission-bps",
            "0",
        ],
        &[],
    );
    assert!(
        err.contains("d402 keys generate --role publisher --state state/nobody"),
        "{err}"
    );
}

/// Keys are 0600, never overwritten, and no secret appears in anything the CLI printed.
#[test]
fn keys_are_private_and_never_printed() {
    let p = publish();
    let cli = &p.cli;
    for role in ["worker", "gateway", "validator"] {
        cli.public_key(role, &format!("state/{role}"));
    }
    let err = cli.fails(
        &[
            "keys",
            "generate",
            "--role",
            "publisher",
            "--state",
            "state/publisher",
        ],
        &[],
    );
    assert!(err.contains("refusing to overwrite"), "{err}");
    // clap's own usage error (several lines, by design of clap) for an unknown role.
    let out = cli.run(&["keys", "generate", "--role", "root", "--state", "state/x"]);
    assert!(!out.status.success());
    cli.fails(
        &[
            "capability",
            "inspect",
            &p.registration,
            "--manifest",
            "missing.json",
        ],
        &[],
    );

    #[cfg(unix)]
    for role in ["publisher", "worker", "gateway", "validator"] {
        use std::os::unix::fs::PermissionsExt;
        let file = cli.path(&format!("state/{role}/keys/{role}.key"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let secrets = cli.secrets();
    assert_eq!(
        secrets.len(),
        5,
        "publisher, example owner, worker, gateway, validator"
    );
    let printed = cli.printed.borrow();
    assert!(printed.len() > 20);
    for secret in &secrets {
        assert_eq!(secret.len(), 64);
        for text in printed.iter() {
            assert!(!text.contains(secret.as_str()), "a secret key was printed");
        }
    }
}
