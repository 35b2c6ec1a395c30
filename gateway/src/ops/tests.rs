//! The alert rules and the monitor's memory, on snapshots built here.

use super::*;

fn snapshot(now_ms: u64) -> OpsSnapshot {
    OpsSnapshot {
        label: "gw".into(),
        rail: "base-x402-direct".into(),
        network: "eip155:31337".into(),
        pay_to: "0xpay".into(),
        fee_payer: None,
        started_ms: 1_000,
        written_ms: now_ms - 1_000,
        incident: false,
        tasks_in_flight: 0,
        in_flight: Vec::new(),
        worker_pay_owed_atomic: "0".into(),
        unpaid_batches: Vec::new(),
        pending_settlements: Vec::new(),
        channels: None,
        counters: BTreeMap::new(),
    }
}

const NOW: u64 = 1_800_000_000_000;

fn codes(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.code.as_str()).collect()
}

#[test]
fn a_fresh_quiet_gateway_raises_nothing() {
    let s = snapshot(NOW);
    assert!(evaluate(&s, NOW, &Thresholds::default(), &BTreeMap::new(), &[]).is_empty());
}

#[test]
fn each_stuck_thing_is_its_own_alert() {
    let t = Thresholds::default();
    let mut s = snapshot(NOW);
    s.written_ms = NOW - 61_000;
    s.incident = true;
    let now_unix = NOW / 1000;
    s.in_flight = vec![
        TaskInFlight {
            id: "late".into(),
            state: "refund_pending".into(),
            created_ms: 0,
            deadline_unix: now_unix - 121,
        },
        // Past its deadline, but within the grace the sweep has to end it.
        TaskInFlight {
            id: "in-grace".into(),
            state: "settled".into(),
            created_ms: 0,
            deadline_unix: now_unix - 100,
        },
    ];
    s.pending_settlements = vec![
        PendingSettlement {
            id: "old".into(),
            rail: "r".into(),
            state: "sent".into(),
            tx_hash: Some("0xabc".into()),
            created_unix: now_unix - 301,
            updated_unix: now_unix,
        },
        PendingSettlement {
            id: "new".into(),
            rail: "r".into(),
            state: "intent".into(),
            tx_hash: None,
            created_unix: now_unix - 10,
            updated_unix: now_unix,
        },
    ];
    s.unpaid_batches = vec![UnpaidBatch {
        id: "payout-batch-1".into(),
        created_ms: NOW - 301_000,
    }];
    let alerts = evaluate(&s, NOW, &t, &BTreeMap::new(), &[]);
    assert_eq!(
        codes(&alerts),
        [
            "gateway-not-reporting",
            "incident-switch-on",
            "stuck-task",
            "pending-settlement",
            "unpaid-payout-batch"
        ]
    );
    assert_eq!(alerts[2].subject.as_deref(), Some("late"));
    assert_eq!(alerts[3].subject.as_deref(), Some("old"));
    assert!(alerts[3].message.contains("0xabc"), "{}", alerts[3].message);
    assert!(alerts.iter().all(|a| !a.event));
}

#[test]
fn counters_alert_on_what_is_new_since_the_baseline() {
    let mut s = snapshot(NOW);
    s.counters = BTreeMap::from([
        ("d402_replay_rejections_total".to_string(), 3),
        ("d402_idempotent_replays_total".to_string(), 1),
        ("d402_payment_id_conflicts_total".to_string(), 1),
        ("d402_payout_errors_total".to_string(), 0),
    ]);
    let t = Thresholds::default();
    let all = evaluate(&s, NOW, &t, &BTreeMap::new(), &[]);
    assert_eq!(
        codes(&all),
        ["replay-rejections", "duplicate-payment-attempts"]
    );
    assert!(all[0].message.starts_with("3 "), "{}", all[0].message);
    assert!(all[1].message.starts_with("2 "), "{}", all[1].message);
    assert!(all.iter().all(|a| a.event));
    let seen = s.counters.clone();
    assert!(evaluate(&s, NOW, &t, &seen, &[]).is_empty());
    s.counters.insert("d402_release_errors_total".into(), 1);
    let alerts = evaluate(&s, NOW, &t, &seen, &[]);
    assert_eq!(codes(&alerts), ["failed-finalizations"]);
    assert_eq!(alerts[0].severity, Severity::Critical);
}

#[test]
fn balances_below_the_minimum_or_unknown_alert() {
    let s = snapshot(NOW);
    let balance = |atomic: Option<&str>, error: Option<&str>| Balance {
        chain: Chain::Solana,
        address: "Fee".into(),
        atomic: atomic.map(String::from),
        minimum_atomic: "5000000".into(),
        error: error.map(String::from),
    };
    let t = Thresholds::default();
    let ok = evaluate(
        &s,
        NOW,
        &t,
        &BTreeMap::new(),
        &[balance(Some("5000000"), None)],
    );
    assert!(ok.is_empty());
    let low = evaluate(
        &s,
        NOW,
        &t,
        &BTreeMap::new(),
        &[balance(Some("4000000"), None)],
    );
    assert_eq!(codes(&low), ["low-fee-payer-balance"]);
    assert!(low[0].message.contains("0.004 SOL"), "{}", low[0].message);
    assert!(low[0].message.contains("0.005"), "{}", low[0].message);
    let unknown = evaluate(
        &s,
        NOW,
        &t,
        &BTreeMap::new(),
        &[balance(None, Some("connection refused"))],
    );
    assert_eq!(codes(&unknown), ["balance-unknown"]);
}

#[test]
fn a_condition_is_reported_when_it_starts_and_when_it_clears() {
    let mut m = MonitorState::default();
    let mut s = snapshot(NOW);
    let stuck = Alert::condition(
        "stuck-task",
        Severity::Critical,
        Some("t1".into()),
        "x".into(),
    );
    let replay = Alert {
        code: "replay-rejections".into(),
        severity: Severity::Warning,
        subject: None,
        message: "1 replayed".into(),
        event: true,
    };
    s.counters.insert("d402_replay_rejections_total".into(), 1);
    let first = m.advance("gw", Some(&s), &[stuck.clone(), replay.clone()], NOW);
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|e| e.status == "firing"));
    assert_eq!(m.baseline(&s)["d402_replay_rejections_total"], 1);
    // Still stuck: not reported again.
    assert!(
        m.advance("gw", Some(&s), std::slice::from_ref(&stuck), NOW)
            .is_empty()
    );
    let cleared = m.advance("gw", Some(&s), &[], NOW);
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].status, "resolved");
    assert_eq!(cleared[0].alert.key(), "stuck-task:t1");
    // A restarted gateway counts from zero again.
    let mut restarted = s.clone();
    restarted.started_ms += 1;
    assert!(m.baseline(&restarted).is_empty());
    // And the state survives the monitor's own restart.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MONITOR_FILE);
    m.advance("gw", Some(&s), &[stuck], NOW);
    m.save(&path).unwrap();
    assert_eq!(MonitorState::load(&path).unwrap(), m);
}

#[test]
fn undelivered_reports_wait_for_the_webhook_and_the_oldest_go_first_when_too_many() {
    let mut m = MonitorState::default();
    let report = |n: u64| AlertEvent {
        status: "firing".into(),
        at_ms: n,
        gateway: "gw".into(),
        alert: Alert::condition("stuck-task", Severity::Critical, None, n.to_string()),
    };
    assert_eq!(m.keep_undelivered(vec![report(1), report(2)]), 0);
    let over = (3..=UNDELIVERED_KEPT as u64 + 1).map(report).collect();
    assert_eq!(m.keep_undelivered(over), 1);
    assert_eq!(m.undelivered.len(), UNDELIVERED_KEPT);
    assert_eq!(m.undelivered[0].at_ms, 2, "the oldest went first");
    assert_eq!(
        m.undelivered.last().unwrap().at_ms,
        UNDELIVERED_KEPT as u64 + 1
    );
    // A state file from before the queue still loads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MONITOR_FILE);
    std::fs::write(
        &path,
        br#"{"gatewayStartedMs":1,"counters":{},"firing":{}}"#,
    )
    .unwrap();
    assert!(MonitorState::load(&path).unwrap().undelivered.is_empty());
}

#[test]
fn a_snapshot_round_trips_and_a_missing_one_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SNAPSHOT_FILE);
    assert!(matches!(
        OpsSnapshot::read(&path),
        Err(OpsError::NoSnapshot(p)) if p == path
    ));
    let s = snapshot(NOW);
    s.write(&path).unwrap();
    assert_eq!(OpsSnapshot::read(&path).unwrap(), s);
    std::fs::write(&path, b"{not json").unwrap();
    assert!(matches!(
        OpsSnapshot::read(&path),
        Err(OpsError::Corrupt { .. })
    ));
}

#[test]
fn coins_print_whole_units() {
    assert_eq!(coins(5_000_000, Chain::Solana), "0.005");
    assert_eq!(coins(2_000_000_000, Chain::Solana), "2");
    assert_eq!(coins(1, Chain::Evm), "0.000000000000000001");
}

#[test]
fn a_withdrawal_over_unclaimed_vouchers_is_an_alert_critical_near_its_end() {
    let t = Thresholds::default();
    let mut s = snapshot(NOW);
    let clock = |channel: &str, left: u64| d402_rails::WithdrawalClock {
        channel: channel.into(),
        ends_unix: NOW / 1000 + left,
        unclaimed: d402_rails::Atomic::new(5),
    };
    s.channels = Some(d402_rails::ChannelBook {
        channels: 2,
        unclaimed: d402_rails::Atomic::new(10),
        withdrawals: vec![clock("0xaa", 3_600), clock("0xbb", 60)],
        unpublished: Vec::new(),
        headroom: None,
    });
    let alerts = evaluate(&s, NOW, &t, &BTreeMap::new(), &[]);
    let severity = |subject: &str| {
        alerts
            .iter()
            .find(|a| a.code == "channel-withdrawal" && a.subject.as_deref() == Some(subject))
            .map(|a| a.severity)
    };
    assert_eq!(severity("0xaa"), Some(Severity::Warning));
    assert_eq!(severity("0xbb"), Some(Severity::Critical));
}

#[test]
fn a_root_left_unpublished_is_critical_after_the_pending_limit() {
    let t = Thresholds::default();
    let mut s = snapshot(NOW);
    let unpublished = |channel: &str, age_s: u64| d402_rails::UnpublishedRoot {
        channel: channel.into(),
        amount: d402_rails::Atomic::new(7),
        since_ms: NOW - age_s * 1000,
    };
    s.channels = Some(d402_rails::ChannelBook {
        channels: 2,
        unclaimed: d402_rails::Atomic::new(14),
        withdrawals: Vec::new(),
        unpublished: vec![unpublished("fresh", 10), unpublished("stale", 301)],
        headroom: None,
    });
    let alerts = evaluate(&s, NOW, &t, &BTreeMap::new(), &[]);
    let stale: Vec<_> = alerts
        .iter()
        .filter(|a| a.code == "channel-root-stale")
        .collect();
    assert_eq!(stale.len(), 1, "{alerts:?}");
    assert_eq!(stale[0].subject.as_deref(), Some("stale"));
    assert_eq!(stale[0].severity, Severity::Critical);
}

#[test]
fn a_maintainers_failed_withdrawal_and_silence_are_alerts() {
    use d402_rails::solana::channel::maintainer::{Failure, MaintainerStatus};
    let t = Thresholds::default();
    let mut m = MaintainerStatus {
        written_ms: NOW - 5_000,
        interval_ms: 30_000,
        rounds: 4,
        channels: 1,
        ..MaintainerStatus::default()
    };
    assert!(maintainer_alerts(&m, NOW, &t).is_empty());
    m.failures = vec![
        Failure {
            channel: "C".into(),
            claimant: Some("W".into()),
            action: "withdraw".into(),
            error: "rpc down".into(),
        },
        Failure {
            channel: "C".into(),
            claimant: None,
            action: "publish".into(),
            error: "stale seq".into(),
        },
    ];
    let alerts = maintainer_alerts(&m, NOW, &t);
    assert_eq!(
        codes(&alerts),
        ["channel-withdrawal-failed", "channel-maintenance-failed"]
    );
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].subject.as_deref(), Some("C:W"));
    // Three intervals without a round: the maintainer stopped.
    m.failures.clear();
    m.written_ms = NOW - 91_000;
    assert_eq!(
        codes(&maintainer_alerts(&m, NOW, &t)),
        ["maintainer-not-reporting"]
    );
}
