//! Fetches the URL from its input (`{"url": string, "count"?: number}`) a thousand times (or `count`
//! times), keeping every body: the egress request-count and byte budgets must stop it. With a small
//! `count` it is also the simplest well-behaved fetcher, for the evidence and replay tests.

/// How many requests to attempt when the input does not say.
pub const REQUESTS: usize = 1000;

/// `count` from the input, if given.
pub fn count_from_input(input: &str) -> usize {
    input
        .split_once("\"count\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(REQUESTS)
}

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
            for _ in 0..crate::count_from_input(&input) {
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
        assert_eq!(super::count_from_input(r#"{"url":"x","count": 3}"#), 3);
        assert_eq!(super::count_from_input(r#"{"url":"x"}"#), super::REQUESTS);
    }
}
