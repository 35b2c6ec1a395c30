//! Sleeps through the WASI clocks, the way a guest can hold a host thread without running any guest
//! code (so epoch interruption alone never sees it). The input names the way:
//! - `"sleep"`: `std::thread::sleep` for 45 s once, then answers;
//! - `"block"`: a monotonic-clock timer 45 s ahead, blocked on directly;
//! - `"poll"`: `wasi:io/poll` over a 45 s timer and one that never fires, then answers;
//! - `"sleep-forever"`: sleeps one second at a time, forever;
//! - `"poll-forever"`: polls a ten-second timer, forever.

#[cfg(target_arch = "wasm32")]
mod component {
    use std::time::Duration;

    use wasip2::clocks::monotonic_clock;
    use wasip2::io::poll;

    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    const LONG: Duration = Duration::from_secs(45);

    struct Sleeper;

    impl Guest for Sleeper {
        fn run(input: String) -> Result<String, CapabilityError> {
            let nanos = LONG.as_nanos() as u64;
            if input.contains("\"sleep-forever\"") {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            if input.contains("\"poll-forever\"") {
                loop {
                    let timer = monotonic_clock::subscribe_duration(10_000_000_000);
                    poll::poll(&[&timer]);
                }
            }
            if input.contains("\"block\"") {
                let timer = monotonic_clock::subscribe_instant(monotonic_clock::now() + nanos);
                timer.block();
                return Ok("{\"woke\":\"block\"}".into());
            }
            if input.contains("\"poll\"") {
                let timer = monotonic_clock::subscribe_duration(nanos);
                let never = monotonic_clock::subscribe_instant(u64::MAX);
                let ready = poll::poll(&[&timer, &never]);
                return Ok(format!("{{\"woke\":\"poll\",\"ready\":{}}}", ready.len()));
            }
            std::thread::sleep(LONG);
            Ok("{\"woke\":\"sleep\"}".into())
        }
    }

    export!(Sleeper);
}
