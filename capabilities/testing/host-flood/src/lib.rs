//! Makes the host hold things outside the guest's linear memory, each of which costs the host
//! memory however small it is. The input names the flood:
//! - `"logs"`: five million empty `log` messages (a byte budget alone never drops them);
//! - `"handles"`: timers created and never dropped, until the host refuses one;
//! - `"random"` / `"insecure-random"`: one call asking for 1 GiB of random bytes.

#[cfg(target_arch = "wasm32")]
mod component {
    use wasip2::clocks::monotonic_clock;

    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    use d402::capability::host::{LogLevel, log};

    struct HostFlood;

    impl Guest for HostFlood {
        fn run(input: String) -> Result<String, CapabilityError> {
            if input.contains("\"logs\"") {
                let n = 5_000_000u32;
                for _ in 0..n {
                    log(LogLevel::Debug, "");
                }
                return Ok(format!("{{\"logged\":{n}}}"));
            }
            if input.contains("\"handles\"") {
                let mut held = Vec::new();
                loop {
                    held.push(monotonic_clock::subscribe_duration(0));
                    if held.len() == usize::MAX {
                        return Ok(String::new());
                    }
                }
            }
            if input.contains("\"insecure-random\"") {
                let bytes = wasip2::random::insecure::get_insecure_random_bytes(1 << 30);
                return Ok(format!("{{\"random\":{}}}", bytes.len()));
            }
            if input.contains("\"random\"") {
                let bytes = wasip2::random::random::get_random_bytes(1 << 30);
                return Ok(format!("{{\"random\":{}}}", bytes.len()));
            }
            Ok("{}".into())
        }
    }

    export!(HostFlood);
}
