//! `compare.json_fields@1`: how many fields several extraction outputs agree on. Each candidate's
//! JSON is flattened to its leaves (`/path → value`, arrays by index); strings are compared with
//! their whitespace collapsed. A pair scores the share of the union of their paths on which
//! both hold the same value. A candidate that is not JSON is one leaf at the root (its text).
//!
//! Integer arithmetic and no imports: the scores are exact and re-executable.
//!
//! ```
//! let s = d402_cap_compare_json::run(r#"{"candidates":["{\"title\":\"A\",\"lang\":\"en\"}","{\"title\":\"A\",\"lang\":\"fr\"}"]}"#).unwrap();
//! assert_eq!(s.scores[0][1], 500_000);
//! ```

use std::collections::BTreeMap;

use d402_comparator::{Candidates, ContractError, Scores, ratio};

/// The capability id and version this crate implements.
pub const CAPABILITY_ID: &str = "compare.json_fields@1";

/// Scores every pair of candidates.
pub fn run(json: &str) -> Result<Scores, ContractError> {
    let input = Candidates::parse(json)?;
    let flat: Vec<BTreeMap<String, String>> = input.candidates.iter().map(|c| flatten(c)).collect();
    Ok(Scores::pairwise(&flat, agreement))
}

/// A candidate's leaves by JSON pointer, each as canonical text.
pub fn flatten(candidate: &str) -> BTreeMap<String, String> {
    let mut leaves = BTreeMap::new();
    match serde_json::from_str::<serde_json::Value>(candidate) {
        Ok(value) => walk(&value, String::new(), &mut leaves),
        Err(_) => {
            leaves.insert(String::new(), collapse(candidate));
        }
    }
    leaves
}

fn walk(value: &serde_json::Value, path: String, leaves: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                walk(v, format!("{path}/{escaped}"), leaves);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{path}/{i}"), leaves);
            }
        }
        serde_json::Value::String(s) => {
            leaves.insert(path, format!("s:{}", collapse(s)));
        }
        other => {
            leaves.insert(path, other.to_string());
        }
    }
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The share of the union of paths on which both hold the same value.
pub fn agreement(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> u32 {
    let same = a.iter().filter(|(k, v)| b.get(*k) == Some(v)).count() as u64;
    let union = (a.len() + b.keys().filter(|k| !a.contains_key(*k)).count()) as u64;
    ratio(same, union)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "capability" });

    struct CompareJson;

    impl Guest for CompareJson {
        fn run(input: String) -> Result<String, CapabilityError> {
            crate::run(&input)
                .map(|scores| scores.to_json())
                .map_err(|e| CapabilityError::InvalidInput(e.to_string()))
        }
    }

    export!(CompareJson);
}

#[cfg(test)]
mod tests {
    use super::*;
    use d402_comparator::SCORE_MAX;

    #[test]
    fn fields_agree_field_by_field() {
        let a = r#"{"title":"Hello  world","links":["a","b"],"n":1}"#;
        let b = r#"{"title":"Hello world","links":["a","c"],"n":1}"#;
        let c = r#"{"title":"Spam","extra":true}"#;
        let input = Candidates {
            candidates: vec![a.into(), b.into(), c.into()],
        };
        let s = run(&input.to_json()).unwrap();
        // a, b: title (whitespace collapsed), links/0 and n agree; links/1 differs: 3 of 4.
        assert_eq!(s.scores[0][1], 750_000);
        // a, c: nothing in common among title, links/0, links/1, n, extra.
        assert_eq!(s.scores[0][2], 0);
        assert_eq!(s.cluster(700_000, 2).unwrap().outliers, vec![2]);
    }

    #[test]
    fn a_string_is_not_the_number_it_spells() {
        let a = flatten(r#"{"n":"1"}"#);
        let b = flatten(r#"{"n":1}"#);
        assert_eq!(agreement(&a, &b), 0);
        assert_eq!(agreement(&flatten("{}"), &flatten("{}")), SCORE_MAX);
    }
}
