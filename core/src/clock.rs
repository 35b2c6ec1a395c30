//! Wall-clock time as the records store it. One definition, so that every record of one process
//! (task records, outbox entries, ops snapshots) reads the same clock the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the system clock is set before it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (what chains and deadlines speak); 0 before it.
pub fn now_unix() -> u64 {
    now_ms() / 1000
}
