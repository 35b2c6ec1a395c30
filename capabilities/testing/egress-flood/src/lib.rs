//! Fetches the URL from its input (`{"url": string}`) a thousand times, keeping every body: the egress
//! request-count and byte budgets must stop it.

/// How many requests to attempt.
pub const REQUESTS: usize = 1000;

/// The URL from the input, without a JSON library: a hostile program keeps its dependencies small.
pub fn url_from_input(input: &str) -> Option<&str> {
    let start = input.find("\"url\"")? + 5;
    let rest = input[start..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    use d402::capability::host::{self, HttpRequest};

    struct EgressFlood;

    impl Guest for EgressFlood {
        fn run(input: String) -> Result<String, CapabilityError> {
            let url = crate::url_from_input(&input).ok_or_else(|| {
                CapabilityError::InvalidInput("expected {\"url\": string}".to_owned())
            })?;
            let mut hoard: Vec<u8> = Vec::new();
            let mut ok = 0usize;
            for _ in 0..crate::REQUESTS {
                if let Ok(response) = host::fetch(&HttpRequest {
                    method: "GET".to_owned(),
                    url: url.to_owned(),
                    headers: Vec::new(),
                    body: None,
                }) {
                    ok += 1;
                    hoard.extend_from_slice(&response.body);
                }
            }
            Ok(format!("{{\"requests\":{ok},\"bytes\":{}}}", hoard.len()))
        }
    }

    export!(EgressFlood);
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_is_read_from_input() {
        assert_eq!(
            super::url_from_input(r#"{"url": "http://a/b"}"#),
            Some("http://a/b")
        );
        assert_eq!(super::url_from_input(r#"{"url":"x"}"#), Some("x"));
        assert_eq!(super::url_from_input("{}"), None);
    }
}
