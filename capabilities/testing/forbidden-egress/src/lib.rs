//! Fetches the cloud metadata endpoint, then loopback: the egress policy must refuse both (the host
//! traps the guest, so the second request runs only if the first one was wrongly allowed).

/// The targets, in order.
pub const TARGETS: [&str; 2] = [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1/",
];

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    use d402::capability::host::{self, HttpRequest};

    struct ForbiddenEgress;

    impl Guest for ForbiddenEgress {
        fn run(_input: String) -> Result<String, CapabilityError> {
            let mut seen = Vec::new();
            for url in crate::TARGETS {
                let outcome = host::fetch(&HttpRequest {
                    method: "GET".to_owned(),
                    url: url.to_owned(),
                    headers: Vec::new(),
                    body: None,
                });
                seen.push(match outcome {
                    Ok(response) => format!(
                        "{{\"url\":\"{url}\",\"status\":{},\"bytes\":{}}}",
                        response.status,
                        response.body.len()
                    ),
                    Err(_) => format!("{{\"url\":\"{url}\",\"error\":true}}"),
                });
            }
            // Reaching this point means the policy let at least one request through.
            Ok(format!("{{\"reached\":[{}]}}", seen.join(",")))
        }
    }

    export!(ForbiddenEgress);
}
