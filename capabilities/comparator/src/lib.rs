//! The comparator contract (seed 000's *scoreable* class): a comparator is an ordinary d402
//! capability, run in the host under its own limits and named by its CID, that reads the outputs
//! of several workers and scores every pair. Because it is itself *exact* (no imports, integer
//! scores), a validator's rerun gives the same scores bit for bit.
//!
//! Input: `{"candidates": ["<output 0>", "<output 1>", …]}`, each candidate the exact output text
//! of one claim. Output: `{"scores": [[…], …]}`, an n×n matrix of scores in millionths
//! (`0..=1_000_000`, [`SCORE_MAX`] for identical outputs). Integers, not floats: the scores are
//! signed into a verdict and compared with a manifest's threshold, both of which must be exact.
//!
//! This crate is the one place both sides read the contract: the comparator guests build their
//! output with it, and the validator checks what a comparator returned with
//! [`Scores::from_output`] before it trusts a single number.

use serde::{Deserialize, Serialize};

/// The largest score: the outputs are the same.
pub const SCORE_MAX: u32 = 1_000_000;

/// Most candidates one comparison takes: a quorum is a handful of workers, and the work is
/// quadratic in their number.
pub const MAX_CANDIDATES: usize = 16;

/// `part / whole` as a score; two empty things are the same.
pub fn ratio(part: u64, whole: u64) -> u32 {
    (part.min(whole) * u64::from(SCORE_MAX))
        .checked_div(whole)
        .map_or(SCORE_MAX, |r| r as u32)
}

/// What a comparator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidates {
    pub candidates: Vec<String>,
}

impl Candidates {
    /// The comparator's input text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"candidates\":[]}"))
    }

    /// Parses and bounds a comparator's input.
    pub fn parse(json: &str) -> Result<Self, ContractError> {
        let input: Self = serde_json::from_str(json).map_err(|e| {
            ContractError::Input(format!("expected {{\"candidates\": [string, …]}}: {e}"))
        })?;
        if input.candidates.len() < 2 || input.candidates.len() > MAX_CANDIDATES {
            return Err(ContractError::Input(format!(
                "needs 2 to {MAX_CANDIDATES} candidates, got {}",
                input.candidates.len()
            )));
        }
        Ok(input)
    }
}

/// A comparator's answer: `scores[i][j]` is how close candidate `i` is to candidate `j`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    pub scores: Vec<Vec<u32>>,
}

/// What is wrong with a comparator's input or output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("comparator input: {0}")]
    Input(String),
    #[error("comparator output: {0}")]
    Output(String),
}

impl Scores {
    /// Scores every pair with `score` (called once per unordered pair, so it need not be
    /// symmetric to give a symmetric matrix), [`SCORE_MAX`] on the diagonal.
    pub fn pairwise<T>(items: &[T], mut score: impl FnMut(&T, &T) -> u32) -> Self {
        let n = items.len();
        let mut scores = vec![vec![SCORE_MAX; n]; n];
        for i in 0..n {
            for j in i + 1..n {
                let s = score(&items[i], &items[j]).min(SCORE_MAX);
                scores[i][j] = s;
                scores[j][i] = s;
            }
        }
        Self { scores }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"scores\":[]}"))
    }

    /// Reads a comparator's output for `n` candidates, refusing anything malformed: not the
    /// contract's JSON, not n×n, a score over [`SCORE_MAX`], a diagonal that is not
    /// [`SCORE_MAX`], or a matrix that is not symmetric. A comparator that returns any of these
    /// is broken or hostile, and no task is accepted on its word.
    pub fn from_output(output: &str, n: usize) -> Result<Self, ContractError> {
        let bad = |m: String| ContractError::Output(m);
        let parsed: Self = serde_json::from_str(output)
            .map_err(|e| bad(format!("expected {{\"scores\": [[integer, …], …]}}: {e}")))?;
        if parsed.scores.len() != n || parsed.scores.iter().any(|row| row.len() != n) {
            return Err(bad(format!("expected a {n}×{n} matrix")));
        }
        for i in 0..n {
            for j in 0..n {
                let s = parsed.scores[i][j];
                if s > SCORE_MAX {
                    return Err(bad(format!("score [{i}][{j}] = {s} is over {SCORE_MAX}")));
                }
                if i == j && s != SCORE_MAX {
                    return Err(bad(format!("candidate {i} scores {s} against itself")));
                }
                if s != parsed.scores[j][i] {
                    return Err(bad(format!("scores [{i}][{j}] and [{j}][{i}] differ")));
                }
            }
        }
        Ok(parsed)
    }

    /// The agreeing cluster at `threshold`: the candidate that agrees with the most others (the
    /// first on a tie), with every candidate that agrees with it. `None` unless the cluster is a
    /// strict majority of the candidates and at least `quorum` strong.
    pub fn cluster(&self, threshold: u32, quorum: usize) -> Option<Cluster> {
        let n = self.scores.len();
        let agrees = |i: usize, j: usize| self.scores[i][j] >= threshold;
        let center = (0..n).max_by_key(|&i| {
            (
                (0..n).filter(|&j| agrees(i, j)).count(),
                std::cmp::Reverse(i),
            )
        })?;
        let members: Vec<usize> = (0..n).filter(|&j| agrees(center, j)).collect();
        (members.len() * 2 > n && members.len() >= quorum.max(1)).then(|| Cluster {
            center,
            outliers: (0..n).filter(|j| !members.contains(j)).collect(),
            members,
        })
    }
}

/// The candidates that agree, around the one that agrees with the most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The output delivered: the candidate closest to the most others.
    pub center: usize,
    pub members: Vec<usize>,
    pub outliers: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_cluster_leaves_the_outlier_out() {
        let s = Scores {
            scores: vec![
                vec![SCORE_MAX, 950_000, 200_000],
                vec![950_000, SCORE_MAX, 250_000],
                vec![200_000, 250_000, SCORE_MAX],
            ],
        };
        let c = s.cluster(900_000, 2).unwrap();
        assert_eq!((c.center, c.members, c.outliers), (0, vec![0, 1], vec![2]));
        assert_eq!(s.cluster(960_000, 2), None, "nobody agrees at 0.96");
        assert_eq!(
            s.cluster(900_000, 3),
            None,
            "two agreeing are not a quorum of three"
        );
    }

    #[test]
    fn malformed_outputs_are_refused() {
        for (text, why) in [
            ("not json", "not json"),
            (
                r#"{"scores":[[1000000,1],[1,1000000]],"extra":1}"#,
                "unknown field",
            ),
            (r#"{"scores":[[1000000,1]]}"#, "not square"),
            (
                r#"{"scores":[[1000000,1000001],[1000001,1000000]]}"#,
                "over the max",
            ),
            (r#"{"scores":[[5,1],[1,1000000]]}"#, "diagonal"),
            (r#"{"scores":[[1000000,1],[2,1000000]]}"#, "asymmetric"),
            (r#"{"scores":[[1000000,-1],[-1,1000000]]}"#, "negative"),
            (r#"{"scores":[[1000000,0.5],[0.5,1000000]]}"#, "float"),
        ] {
            assert!(Scores::from_output(text, 2).is_err(), "{why} was accepted");
        }
        assert!(Scores::from_output(r#"{"scores":[[1000000,7],[7,1000000]]}"#, 2).is_ok());
    }

    #[test]
    fn input_is_bounded() {
        assert!(Candidates::parse(r#"{"candidates":["a"]}"#).is_err());
        let many = Candidates {
            candidates: vec![String::new(); MAX_CANDIDATES + 1],
        };
        assert!(Candidates::parse(&many.to_json()).is_err());
        assert!(Candidates::parse(r#"{"candidates":["a","b"]}"#).is_ok());
    }
}
