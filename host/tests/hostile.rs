//! Every hostile program is stopped with its own error variant, and the host keeps working after.
//! `foreach_hostile!` makes adding a hostile program without a test here a compile error.

mod common;

use std::time::{Duration, Instant};

use d402_capability_artifacts as artifacts;
use d402_core::egress::{AddressClass, BudgetExceeded, EgressDenied};
use d402_core::{EgressPolicy, Limits};
use d402_host::{HostError, Task};

use common::{LoopbackServer, host, load};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
d402_test_artifacts::foreach_hostile!(assert_test_exists);

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
    let (cid, _) = load(&host, d402_test_artifacts::ENDLESS_LOOP_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::MEMORY_BOMB_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::DEEP_RECURSION_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::HUGE_OUTPUT_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::FORBIDDEN_EGRESS_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::EGRESS_FLOOD_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::EGRESS_FLOOD_COMPONENT);
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
    let (cid, _) = load(&host, d402_test_artifacts::PROBE_SANDBOX_COMPONENT);
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
    let bytes = std::fs::read(d402_test_artifacts::UNKNOWN_IMPORT_COMPONENT).unwrap();
    let cid = d402_core::ContentId::of(&bytes);
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

#[test]
fn lookalike_import() {
    let host = host();
    let bytes = std::fs::read(d402_test_artifacts::LOOKALIKE_IMPORT_COMPONENT).unwrap();
    let cid = d402_core::ContentId::of(&bytes);
    // Refused by its exact name at load, before any linking: not `invalid_component` at link time.
    match host.load(&cid, &bytes).unwrap_err() {
        HostError::UnknownImport { name } => assert_eq!(name, "wasi:cli/backdoor@0.2.0"),
        other => panic!("expected UnknownImport, got {other} ({})", other.code()),
    }
    assert!(!host.is_loaded(&cid));
}

/// A guest that sleeps through WASI timers is blocked in a host call, where epoch interruption
/// cannot reach it. The task's clock is stopped, so every timer is due at once: a long sleep returns
/// immediately (the same on every node), and sleeping forever is a loop the wall-time limit stops
/// within a small margin of the limit.
/// The host runs a comparator with malformed scores like any component; the output is what the
/// validator's contract check refuses (node/tests/scoreable.rs).
#[test]
fn malformed_scores() {
    let host = host();
    let (cid, _) = load(&host, d402_test_artifacts::MALFORMED_SCORES_COMPONENT);
    let run = host
        .execute(Task {
            input: r#"{"candidates":["a","b"]}"#,
            ..Task::defaults(cid, "malformed")
        })
        .unwrap();
    let err = d402_comparator::Scores::from_output(&run.output, 2).unwrap_err();
    assert!(err.to_string().contains("2×2"), "{err}");
}

#[test]
fn sleeper() {
    let host = host();
    let (cid, _) = load(&host, d402_test_artifacts::SLEEPER_COMPONENT);
    let limits = Limits {
        fuel: u64::MAX / 2,
        wall_time: Duration::from_millis(1500),
        ..small_limits()
    };
    for way in ["sleep", "block", "poll"] {
        let input = format!(r#"{{"way": "{way}"}}"#);
        let started = Instant::now();
        let out = host
            .execute(Task {
                input: &input,
                limits,
                ..Task::defaults(cid, way)
            })
            .unwrap_or_else(|e| panic!("{way}: {e}"));
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{way} held the host {took:?}"
        );
        assert!(out.output.contains(way), "{way}: {}", out.output);
    }
    for way in ["sleep-forever", "poll-forever"] {
        let input = format!(r#"{{"way": "{way}"}}"#);
        let started = Instant::now();
        let err = host
            .execute(Task {
                input: &input,
                limits,
                ..Task::defaults(cid, way)
            })
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, HostError::WallTimeExceeded { limit_ms: 1500 }),
            "{way}: {err}"
        );
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_millis(2500),
            "{way}: stopped after {took:?} for a 1500 ms limit"
        );
    }
}

/// Everything a guest can make the host hold on its behalf is bounded by count, not only by bytes.
#[test]
fn host_flood() {
    let host = host();
    let (cid, _) = load(&host, d402_test_artifacts::HOST_FLOOD_COMPONENT);
    let limits = Limits {
        fuel: 20_000_000_000,
        wall_time: Duration::from_secs(60),
        ..small_limits()
    };
    // Five million empty log messages: the first `log_records` are kept, the rest counted.
    let out = host
        .execute(Task {
            input: r#"{"flood": "logs"}"#,
            limits,
            ..Task::defaults(cid, "logs")
        })
        .expect("a log flood runs to completion");
    assert_eq!(out.logs.len(), Limits::default().log_records);
    assert_eq!(out.logs_dropped, 5_000_000 - Limits::default().log_records);
    assert_eq!(out.output, r#"{"logged":5000000}"#);

    // Handles created and never dropped, under the default and under a lower limit.
    for handles in [Limits::default().handles, 100] {
        let err = host
            .execute(Task {
                input: r#"{"flood": "handles"}"#,
                limits: Limits { handles, ..limits },
                ..Task::defaults(cid, "handles")
            })
            .unwrap_err();
        match err {
            HostError::ResourceLimit {
                what: "handles",
                limit,
                ..
            } => assert_eq!(limit, handles as u64),
            other => panic!("expected a handle limit, got {other}"),
        }
    }

    // One call asking for 1 GiB of random bytes is refused before the host allocates them.
    for flood in ["random", "insecure-random"] {
        let input = format!(r#"{{"flood": "{flood}"}}"#);
        let err = host
            .execute(Task {
                input: &input,
                limits,
                ..Task::defaults(cid, flood)
            })
            .unwrap_err();
        match err {
            HostError::ResourceLimit {
                what: "random bytes in one call",
                requested,
                limit,
            } => {
                assert_eq!(requested, 1 << 30);
                assert_eq!(limit, Limits::default().random_bytes_per_call);
            }
            other => panic!("{flood}: expected a random-bytes limit, got {other}"),
        }
        assert_eq!(err_code(&host, cid, &input, limits), "resource_limit");
    }
}

fn err_code(
    host: &d402_host::Host,
    cid: d402_core::ContentId,
    input: &str,
    limits: Limits,
) -> &'static str {
    host.execute(Task {
        input,
        limits,
        ..Task::defaults(cid, "code")
    })
    .unwrap_err()
    .code()
}

/// After every kind of hostile run, the same host still runs a well-behaved capability.
#[test]
fn host_keeps_working_after_hostile_runs() {
    let host = host();
    for (_, _, path) in d402_test_artifacts::HOSTILE {
        let bytes = std::fs::read(path).unwrap();
        let cid = d402_core::ContentId::of(&bytes);
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

/// A component whose core module starts with a table of `initial` elements and grows it by `grow`
/// when run, answering `{"ok":true}`: written in the component text format because no Rust guest
/// can grow a table on purpose, and assembled to the binary form a node is given.
fn table_component(initial: u32, grow: u32) -> Vec<u8> {
    wat::parse_str(table_component_text(initial, grow)).expect("valid component text")
}

fn table_component_text(initial: u32, grow: u32) -> String {
    format!(
        r#"(component
  (core module $m
    (table {initial} funcref)
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $bump))
      (global.set $bump (i32.add (global.get $bump) (local.get 3)))
      (local.get $p))
    (data (i32.const 16) "{{\"ok\":true}}")
    (func (export "run") (param i32 i32) (result i32)
      (if (i32.lt_s (table.grow 0 (ref.null func) (i32.const {grow})) (i32.const 0))
        (then unreachable))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (i32.const 16))
      (i32.store (i32.const 8) (i32.const 11))
      (i32.const 0)))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (alias core export $i "run" (core func $run))
  (type $failure' (record (field "code" string) (field "message" string)))
  (export $failure "failure" (type $failure'))
  (type $error' (variant
    (case "invalid-input" string)
    (case "blocked-page" string)
    (case "upstream" string)
    (case "failed" $failure)))
  (export $error "capability-error" (type $error'))
  (func (export "run") (param "input" string) (result (result string (error $error)))
    (canon lift (core func $run) (memory $mem) (realloc $realloc))))"#
    )
}

/// The table limit in force is d402's own (`Limits::table_elements`, 100,000 by default), not the
/// instance pool's: a table between the pool's old cap (20,000) and the limit runs, and one past the
/// limit, declared so (refused at load) or grown so (stopped at run time), fails with
/// `table_limit`.
#[test]
fn table_limit_is_the_documented_one() {
    let host = host();
    let limit = Limits::default().table_elements;
    let run = |initial: u32, grow: u32| {
        let bytes = table_component(initial, grow);
        let cid = d402_core::ContentId::of(&bytes);
        host.load(&cid, &bytes)
            .and_then(|_| {
                host.execute(Task {
                    limits: small_limits(),
                    ..Task::defaults(cid, "table")
                })
            })
            .map(|out| out.output)
    };
    assert_eq!(
        run(50_000, 0).expect("a 50,000-element table"),
        r#"{"ok":true}"#
    );
    assert_eq!(run(1, 60_000).expect("growing to 60,001"), r#"{"ok":true}"#);
    for (initial, grow) in [(1, 150_000), (150_000, 0)] {
        match run(initial, grow) {
            Err(HostError::TableLimit {
                requested,
                limit: got,
            }) => {
                assert_eq!(got, limit);
                assert!(requested > limit, "{requested}");
            }
            other => {
                panic!("table of {initial} grown by {grow}: expected table_limit, got {other:?}")
            }
        }
    }
    // The same holds for linear memory: one declared past the memory cap is refused by that limit.
    let text = table_component_text(1, 0).replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 5000)"#,
    );
    let bytes = wat::parse_str(text).unwrap();
    let cid = d402_core::ContentId::of(&bytes);
    match host.load(&cid, &bytes) {
        Err(HostError::MemoryLimit { requested, limit }) => {
            assert_eq!(requested, 5000 * 65536);
            assert_eq!(limit, Limits::default().memory_bytes);
        }
        other => panic!("expected memory_limit, got {other:?}"),
    }
    // A task whose own limit is lower is held to it.
    let bytes = table_component(1, 60_000);
    let cid = d402_core::ContentId::of(&bytes);
    host.load(&cid, &bytes).expect("loads");
    let err = host
        .execute(Task {
            limits: Limits {
                table_elements: 10_000,
                ..small_limits()
            },
            ..Task::defaults(cid, "table")
        })
        .unwrap_err();
    assert!(
        matches!(err, HostError::TableLimit { limit: 10_000, .. }),
        "{err}"
    );
}
