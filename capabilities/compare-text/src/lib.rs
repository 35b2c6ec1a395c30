//! `compare.text_similarity@1`: how alike several outputs read. Each candidate is reduced to its
//! canonical text (every string in its JSON, in key order, or the text itself when it is not
//! JSON; lower-cased words of letters and digits), then every pair is scored as the mean of
//! - the Jaccard index of their word 3-shingles (what they say, in any order), and
//! - one minus their word-level edit distance over the longer length (in what order).
//!
//! Dynamic pages differ a little between loads (a date, a counter, a rotated teaser); two honest
//! conversions of the same page score well above 0.9, a page with its body replaced far below.
//! Integer arithmetic throughout, and no imports: the scores are exact and re-executable.
//!
//! ```
//! let scores = d402_cap_compare_text::run(r#"{"candidates":["the cat sat on the mat","the cat sat on the mat","buy cheap watches now"]}"#).unwrap();
//! assert_eq!(scores.scores[0][1], 1_000_000);
//! assert!(scores.scores[0][2] < 100_000);
//! ```

use d402_comparator::{Candidates, ContractError, SCORE_MAX, Scores, ratio};

/// The capability id and version this crate implements.
pub const CAPABILITY_ID: &str = "compare.text_similarity@1";

/// Words per shingle.
const SHINGLE: usize = 3;

/// Words of each text the edit distance looks at: the distance is quadratic, and the first few
/// thousand words of two conversions say whether they are the same document.
const EDIT_WORDS: usize = 2_000;

/// Scores every pair of candidates.
pub fn run(json: &str) -> Result<Scores, ContractError> {
    let input = Candidates::parse(json)?;
    let texts: Vec<Vec<String>> = input
        .candidates
        .iter()
        .map(|c| words(&canonical_text(c)))
        .collect();
    Ok(Scores::pairwise(&texts, |a, b| {
        (jaccard(a, b) + edit_similarity(a, b)) / 2
    }))
}

/// The text a candidate says: its JSON strings in key order, or itself if it is not JSON.
pub fn canonical_text(candidate: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(candidate) {
        Ok(value) => {
            let mut out = String::new();
            collect_strings(&value, &mut out);
            out
        }
        Err(_) => candidate.to_string(),
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                collect_strings(&map[key], out);
            }
        }
        _ => {}
    }
}

/// Lower-cased runs of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Jaccard index of the word shingles (short texts: of their whole word sequence).
pub fn jaccard(a: &[String], b: &[String]) -> u32 {
    let shingles = |w: &[String]| -> std::collections::BTreeSet<Vec<String>> {
        if w.len() < SHINGLE {
            [w.to_vec()].into_iter().filter(|s| !s.is_empty()).collect()
        } else {
            w.windows(SHINGLE).map(<[String]>::to_vec).collect()
        }
    };
    let (sa, sb) = (shingles(a), shingles(b));
    let common = sa.intersection(&sb).count() as u64;
    let union = (sa.len() + sb.len()) as u64 - common;
    ratio(common, union)
}

/// One minus the word edit distance over the longer length, on the first [`EDIT_WORDS`] words.
pub fn edit_similarity(a: &[String], b: &[String]) -> u32 {
    let (a, b) = (&a[..a.len().min(EDIT_WORDS)], &b[..b.len().min(EDIT_WORDS)]);
    let longer = a.len().max(b.len()) as u64;
    if longer == 0 {
        return SCORE_MAX;
    }
    // Two rows of the Levenshtein table.
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(wa != wb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[b.len()] as u64;
    ratio(longer - distance.min(longer), longer)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../wit", world: "capability" });

    struct CompareText;

    impl Guest for CompareText {
        fn run(input: String) -> Result<String, CapabilityError> {
            crate::run(&input)
                .map(|scores| scores.to_json())
                .map_err(|e| CapabilityError::InvalidInput(e.to_string()))
        }
    }

    export!(CompareText);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Vec<String> {
        words(text)
    }

    #[test]
    fn identical_texts_score_the_max_and_disjoint_ones_zero() {
        let a = w("one two three four five");
        assert_eq!(jaccard(&a, &a), SCORE_MAX);
        assert_eq!(edit_similarity(&a, &a), SCORE_MAX);
        let b = w("six seven eight nine ten");
        assert_eq!(jaccard(&a, &b), 0);
        assert_eq!(edit_similarity(&a, &b), 0);
        assert_eq!(jaccard(&[], &[]), SCORE_MAX);
    }

    #[test]
    fn a_small_change_scores_high_a_replaced_body_low() {
        let base: String = (0..60)
            .map(|i| {
                format!(
                    "Paragraph {i} explains part {} of the reliable software story. ",
                    i * 7
                )
            })
            .collect();
        let page = |extra: &str| format!(r#"{{"markdown":"{base} Updated at {extra}."}}"#);
        let replaced =
            r#"{"markdown":"Buy cheap watches at example.invalid! Best prices every day."}"#;
        let input = Candidates {
            candidates: vec![page("10:01"), page("10:02"), replaced.into()],
        };
        let scores = run(&input.to_json()).unwrap();
        assert!(scores.scores[0][1] > 950_000, "{:?}", scores);
        assert!(scores.scores[0][2] < 100_000, "{:?}", scores);
        let cluster = scores.cluster(900_000, 2).unwrap();
        assert_eq!(cluster.outliers, vec![2]);
    }

    #[test]
    fn canonical_text_reads_json_strings_in_key_order() {
        assert_eq!(canonical_text(r#"{"b":"two","a":["one",3]}"#), "one\ntwo\n");
        assert_eq!(canonical_text("plain"), "plain");
        assert_eq!(w("Hello, World! 42"), vec!["hello", "world", "42"]);
    }
}
