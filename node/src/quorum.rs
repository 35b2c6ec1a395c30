//! Counting claims: which output enough workers agree on.
//!
//! Claims are grouped by what the validation class compares: the output CID for *exact*
//! capabilities, the canonical hash for *canonicalizable* ones; *scoreable* claims are only
//! counted here and compared by the validator's comparator. A group that reaches the quorum
//! wins; claims outside it are the minority and are rejected.

use std::collections::BTreeMap;

use d402_core::ContentId;
use d402_registry::ValidationClass;

use crate::wire::Claim;

/// The key claims agree on under `class`. Scoreable claims all share one key: they are counted
/// until the quorum is reached and compared afterwards by the validator's comparator.
pub fn agreement_key(claim: &Claim, class: ValidationClass) -> ContentId {
    match class {
        ValidationClass::Exact => claim.receipt.body.output,
        ValidationClass::Scoreable => ContentId::of(b"d402/scoreable: compared by score"),
        _ => claim.receipt.body.canonical_output,
    }
}

/// Claims so far, grouped by agreement key (indices into the caller's claim list).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    groups: BTreeMap<ContentId, Vec<usize>>,
}

/// The result of a finished count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumOutcome {
    pub agreed: ContentId,
    pub majority: Vec<usize>,
    pub minority: Vec<usize>,
}

impl Tally {
    pub fn add(&mut self, index: usize, key: ContentId) {
        self.groups.entry(key).or_default().push(index);
    }

    /// The size of the largest group.
    pub fn best(&self) -> usize {
        self.groups.values().map(Vec::len).max().unwrap_or(0)
    }

    /// The winning group once one has `quorum` members. Ties cannot both reach a quorum larger
    /// than half the claims; if two groups reach a small quorum, the larger (then the first
    /// reached) wins.
    pub fn outcome(&self, quorum: usize) -> Option<QuorumOutcome> {
        let (agreed, majority) = self
            .groups
            .iter()
            .filter(|(_, members)| members.len() >= quorum.max(1))
            .max_by_key(|(_, members)| (members.len(), std::cmp::Reverse(members[0])))?;
        let mut minority: Vec<usize> = self
            .groups
            .iter()
            .filter(|(key, _)| *key != agreed)
            .flat_map(|(_, members)| members.iter().copied())
            .collect();
        minority.sort_unstable();
        Some(QuorumOutcome {
            agreed: *agreed,
            majority: majority.clone(),
            minority,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_of_three_outvote_one() {
        let good = ContentId::of(b"good");
        let bad = ContentId::of(b"bad");
        let mut tally = Tally::default();
        tally.add(0, good);
        tally.add(1, bad);
        assert_eq!(tally.outcome(2), None);
        assert_eq!(tally.best(), 1);
        tally.add(2, good);
        let outcome = tally.outcome(2).unwrap();
        assert_eq!(outcome.agreed, good);
        assert_eq!(outcome.majority, vec![0, 2]);
        assert_eq!(outcome.minority, vec![1]);
    }

    #[test]
    fn quorum_one_takes_the_first_claim() {
        let mut tally = Tally::default();
        tally.add(0, ContentId::of(b"a"));
        tally.add(1, ContentId::of(b"b"));
        assert_eq!(tally.outcome(1).unwrap().majority, vec![0]);
    }
}
