//! A small growable bitset over dense indices: the solver's sets of options, rules and groups.
//! Words are `u64`; a set never shrinks, so two sets built for the same catalog compare equal
//! exactly when they hold the same members.

#[derive(Clone, Debug, Default)]
pub(crate) struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// An empty set with room for `len` members without growing.
    pub(crate) fn with_capacity(len: usize) -> Self {
        Self { words: vec![0; len.div_ceil(64)] }
    }

    pub(crate) fn insert(&mut self, index: usize) {
        let word = index / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (index % 64);
    }

    pub(crate) fn remove(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word &= !(1 << (index % 64));
        }
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        self.words.get(index / 64).is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.words.iter().map(|word| word.count_ones() as usize).sum()
    }

    pub(crate) fn union_with(&mut self, other: &Bits) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word |= theirs;
        }
    }

    pub(crate) fn intersect_with(&mut self, other: &Bits) {
        for (index, word) in self.words.iter_mut().enumerate() {
            *word &= other.words.get(index).copied().unwrap_or(0);
        }
    }

    /// Whether no member of `self` is in `other`.
    pub(crate) fn is_disjoint(&self, other: &Bits) -> bool {
        self.words.iter().zip(&other.words).all(|(word, theirs)| word & theirs == 0)
    }

    /// Removes every member of `other`.
    pub(crate) fn difference_with(&mut self, other: &Bits) {
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word &= !theirs;
        }
    }

    /// Whether every member of `self` is also in `other`.
    pub(crate) fn is_subset(&self, other: &Bits) -> bool {
        self.words.iter().enumerate().all(|(index, word)| word & !other.words.get(index).copied().unwrap_or(0) == 0)
    }

    /// Members in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    index * 64 + bit
                })
            })
        })
    }
}

impl PartialEq for Bits {
    fn eq(&self, other: &Self) -> bool {
        self.is_subset(other) && other.is_subset(self)
    }
}

impl Eq for Bits {}

impl FromIterator<usize> for Bits {
    fn from_iter<I: IntoIterator<Item = usize>>(members: I) -> Self {
        let mut bits = Bits::default();
        for member in members {
            bits.insert(member);
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_agree_with_a_plain_set() {
        let a: Bits = [1, 64, 130].into_iter().collect();
        let b: Bits = [64, 2].into_iter().collect();
        let mut union = a.clone();
        union.union_with(&b);
        assert_eq!(union.iter().collect::<Vec<_>>(), vec![1, 2, 64, 130]);
        let mut meet = a.clone();
        meet.intersect_with(&b);
        assert_eq!(meet.iter().collect::<Vec<_>>(), vec![64]);
        assert!(meet.is_subset(&a) && !a.is_subset(&b));
        let mut rest = a.clone();
        rest.difference_with(&b);
        assert_eq!(rest.iter().collect::<Vec<_>>(), vec![1, 130]);
        assert!(rest.is_disjoint(&b) && !a.is_disjoint(&b));
        assert_eq!(a.len(), 3);
        let mut c = a.clone();
        c.remove(130);
        c.remove(9_999);
        assert!(!c.contains(130) && c.contains(64));
        assert_eq!(Bits::with_capacity(200), Bits::default());
        assert!(Bits::with_capacity(200).is_empty());
    }
}
