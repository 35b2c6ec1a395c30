//! Every hostile program is stopped with its own error variant, and the host keeps working after.
//! `foreach_hostile!` makes adding a hostile program without a test here a compile error.

mod common;

use std::time::{Duration, Instant};

use d402_capability_artifacts as artifacts;
use d402_host::egress::{AddressClass, BudgetExceeded, EgressDenied};
use d402_host::{EgressPolicy, HostError, Limits, Task};

use common::{LoopbackServer, host, load};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
artifacts::foreach_hostile!(assert_test_exists);

fn small_limits() -> Limits {
    Limits {
        fuel: 50_000_000,
        memory_bytes: 32 * 1024 * 1024,
        wall_time: Duration::from_secs(10),
        ..Limits::default()
    }
}

#[test]
fn endless_loop() {
    let host = host();
    let (cid, _) = load(&host, artifacts::ENDLESS_LOOP_COMPONENT);
    let err = host
        .execute(Task {
            limits: small_limits(),
            ..Task::defaults(cid, "loop")
        })
        .unwrap_err();
    assert!(
        matches!(err, HostError::FuelExhausted { limit: 50_000_000 }),
        "{err}"
    );

    // With fuel to spare, the wall-time limit stops it instead, close to the limit.
    let started = Instant::now();
    let err = host
        .execute(Task {
            limits: Limits {
                fuel: u64::MAX / 2,
                wall_time: Duration::from_millis(300),
                ..small_limits()
            },
            ..Task::defaults(cid, "loop")
        })
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, HostError::WallTimeExceeded { limit_ms: 300 }),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
}

#[test]
fn memory_bomb() {
    let host = host();
    let (cid, _) = load(&host, artifacts::MEMORY_BOMB_COMPONENT);
    let err = host
        .execute(Task {
            limits: small_limits(),
            ..Task::defaults(cid, "bomb")
        })
        .unwrap_err();
    match err {
        HostError::MemoryLimit { requested, limit } => {
            assert_eq!(limit, 32 * 1024 * 1024);
            assert!(requested > limit);
        }
        other => panic!("expected MemoryLimit, got {other}"),
    }
}

#[test]
fn deep_recursion() {
    let host = host();
    let (cid, _) = load(&host, artifacts::DEEP_RECURSION_COMPONENT);
    let err = host
        .execute(Task {
            limits: Limits {
                fuel: 20_000_000_000,
                ..small_limits()
            },
            ..Task::defaults(cid, "recursion")
        })
        .unwrap_err();
    assert!(matches!(err, HostError::StackOverflow), "{err}");
    // A bounded depth runs to completion on the same host.
    host.execute(Task {
        input: r#"{"depth": 1000}"#,
        limits: small_limits(),
        ..Task::defaults(cid, "shallow")
    })
    .expect("shallow recursion completes");
}

#[test]
fn huge_output() {
    let host = host();
    let (cid, _) = load(&host, artifacts::HUGE_OUTPUT_COMPONENT);
    let err = host
        .execute(Task {
            limits: Limits {
                fuel: 5_000_000_000,
                memory_bytes: 256 * 1024 * 1024,
                output_bytes: 1024 * 1024,
                ..small_limits()
            },
            ..Task::defaults(cid, "huge")
        })
        .unwrap_err();
    match err {
        HostError::OutputTooLarge {
            what: "output",
            size,
            limit,
        } => {
            assert_eq!(limit, 1024 * 1024);
            assert!(size > limit);
        }
        other => panic!("expected OutputTooLarge, got {other}"),
    }
    // With less memory than the output needs, the memory limit stops it first.
    let err = host
        .execute(Task {
            limits: small_limits(),
            ..Task::defaults(cid, "huge")
        })
        .unwrap_err();
    assert!(matches!(err, HostError::MemoryLimit { .. }), "{err}");
}

#[test]
fn forbidden_egress() {
    let host = host();
    let (cid, _) = load(&host, artifacts::FORBIDDEN_EGRESS_COMPONENT);
    // Default policy: the metadata host is not on the (empty) allowlist.
    let err = host
        .execute(Task {
            limits: small_limits(),
            ..Task::defaults(cid, "metadata")
        })
        .unwrap_err();
    assert!(
        matches!(&err, HostError::EgressDenied(EgressDenied::HostNotAllowed(h)) if h == "169.254.169.254"),
        "{err}"
    );
    // Even if a manifest lists it, the address policy refuses it before any connection.
    let err = host
        .execute(Task {
            limits: small_limits(),
            egress: EgressPolicy {
                allowed_hosts: vec!["169.254.169.254".into(), "127.0.0.1".into()],
                ..EgressPolicy::default()
            },
            ..Task::defaults(cid, "metadata")
        })
        .unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::EgressDenied(EgressDenied::InwardAddress {
                class: AddressClass::CloudMetadata,
                ..
            })
        ),
        "{err}"
    );
}

/// `egress_flood` fetches the URL in its input in a loop; used here for the budgets and for the
/// address policy on any target.
#[test]
fn egress_flood() {
    let host = host();
    let (cid, _) = load(&host, artifacts::EGRESS_FLOOD_COMPONENT);
    let server = LoopbackServer::serving(vec![b'x'; 64 * 1024]);
    let url = server.url("127.0.0.1", "/page");
    let input = format!(r#"{{"url": "{url}"}}"#);
    let open_policy = EgressPolicy {
        allowed_hosts: vec!["127.0.0.1".into()],
        allow_private_targets: true,
        max_requests: 10_000,
        max_response_bytes: 1024 * 1024,
        ..EgressPolicy::default()
    };
    // Bytes: 64 KiB a response against a 1 MiB budget.
    let err = host
        .execute(Task {
            input: &input,
            limits: small_limits(),
            egress: open_policy.clone(),
            ..Task::defaults(cid, "flood")
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            HostError::EgressBudgetExceeded(BudgetExceeded::Bytes { limit: 1_048_576 })
        ),
        "{err}"
    );
    let served = server.count();
    assert!(
        (16..=17).contains(&served),
        "{served} requests served for a 1 MiB budget"
    );

    // Requests: 5 allowed.
    let err = host
        .execute(Task {
            input: &input,
            limits: small_limits(),
            egress: EgressPolicy {
                max_requests: 5,
                ..open_policy
            },
            ..Task::defaults(cid, "flood")
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            HostError::EgressBudgetExceeded(BudgetExceeded::Requests { limit: 5 })
        ),
        "{err}"
    );
}

/// Egress to 127.0.0.1, 10.0.0.1, 169.254.169.254 and a name that resolves to loopback is refused
/// by default, even when the allowlist names them, and no connection is made.
#[test]
fn inward_targets_are_refused_by_default() {
    let host = host();
    let (cid, _) = load(&host, artifacts::EGRESS_FLOOD_COMPONENT);
    let server = LoopbackServer::serving(b"secret".to_vec());
    let cases = [
        (server.url("127.0.0.1", "/"), AddressClass::Loopback),
        (server.url("localhost", "/"), AddressClass::Loopback),
        ("http://10.0.0.1/".to_string(), AddressClass::Private),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            AddressClass::CloudMetadata,
        ),
        (
            "http://[::ffff:127.0.0.1]/".to_string(),
            AddressClass::Loopback,
        ),
    ];
    for (url, class) in cases {
        let input = format!(r#"{{"url": "{url}"}}"#);
        let err = host
            .execute(Task {
                input: &input,
                limits: small_limits(),
                egress: EgressPolicy {
                    allowed_hosts: vec!["*".into()],
                    ..EgressPolicy::default()
                },
                ..Task::defaults(cid, "inward")
            })
            .unwrap_err();
        match err {
            HostError::EgressDenied(EgressDenied::InwardAddress { class: got, .. }) => {
                assert_eq!(got, class, "{url}")
            }
            other => panic!("{url}: expected an inward-address refusal, got {other}"),
        }
    }
    assert_eq!(
        server.count(),
        0,
        "no request may reach the loopback server"
    );
}

#[test]
fn probe_sandbox() {
    let host = host();
    let (cid, _) = load(&host, artifacts::PROBE_SANDBOX_COMPONENT);
    let run = |task_id: &str, timestamp_ms: u64| {
        let mut task = Task {
            limits: small_limits(),
            ..Task::defaults(cid, task_id)
        };
        task.context.timestamp_ms = timestamp_ms;
        let out = host.execute(task).expect("the probe runs to completion");
        serde_json::from_str::<serde_json::Value>(&out.output).expect("JSON report")
    };
    let report = run("probe-1", 1_700_000_000_123);
    assert_eq!(report["env"], serde_json::json!([]), "{report}");
    assert_eq!(report["args"], serde_json::json!([]), "{report}");
    for probe in ["readDirRoot", "readEtcPasswd", "writeFile", "tcpConnect"] {
        assert!(
            report[probe].get("err").is_some(),
            "{probe} must fail: {report}"
        );
    }
    assert_eq!(
        report["timeMs"], 1_700_000_000_123u64,
        "the clock is the task's timestamp"
    );
    // Randomness is a function of the task id alone.
    let again = run("probe-1", 1_700_000_000_123);
    assert_eq!(report, again);
    let other = run("probe-2", 1_700_000_000_123);
    assert_ne!(report["randomHex"], other["randomHex"]);
}

#[test]
fn unknown_import() {
    let host = host();
    let bytes = std::fs::read(artifacts::UNKNOWN_IMPORT_COMPONENT).unwrap();
    let cid = d402_host::ContentId::of(&bytes);
    let err = host.load(&cid, &bytes).unwrap_err();
    match &err {
        HostError::UnknownImport { name } => {
            assert!(name.starts_with("d402:backdoor/shell"), "{name}")
        }
        other => panic!("expected UnknownImport, got {other}"),
    }
    assert!(
        err.to_string().contains("d402:backdoor/shell"),
        "the error names the import: {err}"
    );
    assert!(
        !host.is_loaded(&cid),
        "a refused component is never runnable"
    );
}

/// After every kind of hostile run, the same host still runs a well-behaved capability.
#[test]
fn host_keeps_working_after_hostile_runs() {
    let host = host();
    for (_, _, path) in artifacts::HOSTILE {
        let bytes = std::fs::read(path).unwrap();
        let cid = d402_host::ContentId::of(&bytes);
        if host.load(&cid, &bytes).is_ok() {
            let _ = host.execute(Task {
                limits: small_limits(),
                ..Task::defaults(cid, "h")
            });
        }
    }
    let (cid, _) = load(&host, artifacts::MERKLE_VERIFY_COMPONENT);
    let leaf = "6c656166";
    let root = "00".repeat(32);
    let input = format!(r#"{{"leaf":"{leaf}","proof":[],"root":"{root}"}}"#);
    let out = host
        .execute(Task {
            input: &input,
            limits: small_limits(),
            ..Task::defaults(cid, "ok")
        })
        .expect("a well-behaved capability still runs");
    assert!(out.output.contains("\"valid\":false"), "{}", out.output);
}
