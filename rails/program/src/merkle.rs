//! The allocation tree a root commits to: one leaf per claimant, `sha256(0x00 || claimant ||
//! cumulative amount as u64 LE)`; a node is `sha256(0x01 || left || right)`; a level's odd last
//! node is carried up unchanged. Leaves are sorted by claimant, so the same allocation always gives
//! the same root. A proof lists the siblings from the leaf up, and a bit per sibling (bit i set:
//! sibling i is on the left), which is what the program folds (`verify_proof` in `d402.s`).

use sha2::{Digest, Sha256};
use solana_pubkey::Pubkey;

/// A claimant's proof: the siblings and their sides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Proof {
    pub nodes: Vec<[u8; 32]>,
    /// Bit i set: `nodes[i]` is the left input of its hash.
    pub left: u32,
}

/// A tree over cumulative allocations.
#[derive(Debug, Clone)]
pub struct Tree {
    leaves: Vec<(Pubkey, u64)>,
    levels: Vec<Vec<[u8; 32]>>,
}

/// The most claimants one root can hold (a proof has at most 32 siblings).
pub const MAX_DEPTH: usize = 32;

pub fn leaf_hash(claimant: &Pubkey, amount: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(claimant.as_ref());
    h.update(amount.to_le_bytes());
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

impl Tree {
    /// The tree of `allocations` (claimant, cumulative amount); a claimant named twice is given
    /// the sum. An empty allocation has the all-zero root.
    pub fn new(allocations: impl IntoIterator<Item = (Pubkey, u64)>) -> Self {
        let mut leaves: Vec<(Pubkey, u64)> = Vec::new();
        for (who, amount) in allocations {
            match leaves.iter_mut().find(|(w, _)| *w == who) {
                Some((_, sum)) => *sum = sum.saturating_add(amount),
                None => leaves.push((who, amount)),
            }
        }
        leaves.sort_by_key(|l| l.0);
        let mut levels = vec![
            leaves
                .iter()
                .map(|(w, a)| leaf_hash(w, *a))
                .collect::<Vec<_>>(),
        ];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [only] => *only,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(up);
        }
        Tree { leaves, levels }
    }

    pub fn root(&self) -> [u8; 32] {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// The sum of every allocation.
    pub fn total(&self) -> u64 {
        self.leaves
            .iter()
            .fold(0u64, |s, (_, a)| s.saturating_add(*a))
    }

    /// `claimant`'s cumulative amount and proof, if it has a leaf.
    pub fn proof(&self, claimant: &Pubkey) -> Option<(u64, Proof)> {
        let mut index = self.leaves.iter().position(|(w, _)| w == claimant)?;
        let amount = self.leaves[index].1;
        let mut proof = Proof::default();
        for level in &self.levels[..self.levels.len().saturating_sub(1)] {
            let sibling = index ^ 1;
            if let Some(node) = level.get(sibling) {
                if sibling < index {
                    proof.left |= 1 << proof.nodes.len();
                }
                proof.nodes.push(*node);
            }
            index /= 2;
        }
        Some((amount, proof))
    }
}

/// Folds `proof` from `claimant`'s leaf, as the program does.
pub fn verify(root: &[u8; 32], claimant: &Pubkey, amount: u64, proof: &Proof) -> bool {
    let mut h = leaf_hash(claimant, amount);
    for (i, node) in proof.nodes.iter().enumerate() {
        h = if proof.left & (1 << i) != 0 {
            node_hash(node, &h)
        } else {
            node_hash(&h, node)
        };
    }
    &h == root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_proves_and_nothing_else_does() {
        for n in 1..=9 {
            let who: Vec<Pubkey> = (0..n).map(|_| Pubkey::new_unique()).collect();
            let tree = Tree::new(who.iter().enumerate().map(|(i, w)| (*w, 10 * i as u64 + 1)));
            for (i, w) in who.iter().enumerate() {
                let (amount, proof) = tree.proof(w).expect("a leaf");
                assert_eq!(amount, 10 * i as u64 + 1);
                assert!(verify(&tree.root(), w, amount, &proof), "n={n} i={i}");
                assert!(!verify(&tree.root(), w, amount + 1, &proof));
                if n > 1 {
                    let mut forged = proof.clone();
                    forged.left ^= 1;
                    assert!(!verify(&tree.root(), w, amount, &forged));
                }
            }
            assert!(tree.proof(&Pubkey::new_unique()).is_none());
        }
    }

    #[test]
    fn the_root_does_not_depend_on_order_and_sums_repeats() {
        let (a, b) = (Pubkey::new_unique(), Pubkey::new_unique());
        let one = Tree::new([(a, 5), (b, 7), (a, 1)]);
        let two = Tree::new([(b, 7), (a, 6)]);
        assert_eq!(one.root(), two.root());
        assert_eq!(one.total(), 13);
    }
}
