//! The fewest picks to give up so that a selection has a valid completion again.
//!
//! Candidate drop sets are tried by size, smallest first; every failed try yields a core, and a
//! candidate that leaves some known core intact is skipped without a search (an implicit
//! hitting-set search). Within a size, candidates come in a fixed order that makes the answer
//! deterministic: the picks are listed latest in catalog order first and combined in
//! lexicographic order, so the first working candidate is the one whose dropped picks, read from
//! the latest in the catalog down, come latest. The catalog lists the model first, so a fix gives
//! up late additions before the model and the engine.

use super::bits::Bits;
use super::constraints::Constraints;
use super::search::{Core, find_model};

/// The smallest set of options (never `keep`) to remove from `selection` so that it has a valid
/// completion, or why no valid configuration contains even `keep` alone (or, without `keep`,
/// why the catalog has none at all).
pub(crate) fn minimal_drop(constraints: &Constraints, selection: &Bits, keep: Option<usize>) -> Result<Bits, Core> {
    find_model(constraints, &keep.into_iter().collect())?;
    let mut droppable: Vec<usize> = selection.iter().filter(|&var| Some(var) != keep).collect();
    droppable.reverse();
    let mut cores: Vec<Bits> = Vec::new();
    for size in 0..droppable.len() {
        let mut positions: Vec<usize> = (0..size).collect();
        loop {
            let dropped: Bits = positions.iter().map(|&position| droppable[position]).collect();
            if cores.iter().all(|core| !core.is_disjoint(&dropped)) {
                let mut kept = selection.clone();
                kept.difference_with(&dropped);
                match find_model(constraints, &kept) {
                    Ok(_) => return Ok(dropped),
                    Err(core) => cores.push(core.assumptions),
                }
            }
            if !next_combination(&mut positions, droppable.len()) {
                break;
            }
        }
    }
    // Keeping nothing but `keep` works: checked first.
    Ok(droppable.into_iter().collect())
}

/// Advances `positions` (strictly increasing, each below `n`) to the next combination in
/// lexicographic order; false after the last one.
fn next_combination(positions: &mut [usize], n: usize) -> bool {
    let k = positions.len();
    for i in (0..k).rev() {
        if positions[i] < n - k + i {
            positions[i] += 1;
            for j in i + 1..k {
                positions[j] = positions[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_come_in_lexicographic_order() {
        let mut positions = vec![0, 1];
        let mut seen = vec![positions.clone()];
        while next_combination(&mut positions, 4) {
            seen.push(positions.clone());
        }
        assert_eq!(seen, vec![vec![0, 1], vec![0, 2], vec![0, 3], vec![1, 2], vec![1, 3], vec![2, 3]]);
        assert!(!next_combination(&mut [], 3));
    }
}
