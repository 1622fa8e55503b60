//! The catalog semantics written out naively, by enumerating every subset of the options.
//! Independent of the solver's compiled form; usable for catalogs of up to ~14 options.

use motorpool_configurator::domain::{Catalog, Choice, RuleKind};

/// A set of options as a bit mask over catalog positions.
pub type Mask = u32;

pub struct BruteForce<'a> {
    catalog: &'a Catalog,
    /// Every valid complete selection.
    pub valid: Vec<Mask>,
}

/// What the solver should report for an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Selected,
    Available,
    Required,
    Unavailable,
}

impl<'a> BruteForce<'a> {
    pub fn new(catalog: &'a Catalog) -> Self {
        let all = 1u32 << catalog.options.len();
        let mut brute = Self { catalog, valid: Vec::new() };
        brute.valid = (0..all).filter(|&mask| brute.is_valid(mask)).collect();
        brute
    }

    fn index(&self, code: &str) -> usize {
        self.catalog.options.iter().position(|o| o.code == code).expect("a catalog code")
    }

    fn has(&self, mask: Mask, code: &str) -> bool {
        mask & (1 << self.index(code)) != 0
    }

    fn group_mask(&self, group: &str) -> Mask {
        self.catalog.options.iter().enumerate().filter(|(_, o)| o.group == group).map(|(i, _)| 1 << i).sum()
    }

    pub fn is_valid(&self, mask: Mask) -> bool {
        self.is_valid_under(mask, None, None)
    }

    /// Validity under only the listed rules and group bounds (all of them for `None`).
    pub fn is_valid_under(&self, mask: Mask, rules: Option<&[&str]>, groups: Option<&[&str]>) -> bool {
        let groups_hold = self.catalog.groups.iter().filter(|g| groups.is_none_or(|only| only.contains(&g.code.as_str()))).all(|group| {
            let count = (mask & self.group_mask(&group.code)).count_ones();
            match group.choice {
                Choice::Single { required } => count <= 1 && (!required || count == 1),
                Choice::Multiple { min, max } => count >= min && max.is_none_or(|max| count <= max),
            }
        });
        groups_hold
            && self.catalog.rules.iter().filter(|r| rules.is_none_or(|only| only.contains(&r.id.as_str()))).all(|rule| match &rule.kind {
                RuleKind::Requires { if_selected, then_any_of } => {
                    !self.has(mask, if_selected) || then_any_of.iter().any(|code| self.has(mask, code))
                }
                RuleKind::Excludes { a, b } => !(self.has(mask, a) && self.has(mask, b)),
                RuleKind::Package { package, includes } => !self.has(mask, package) || includes.iter().all(|code| self.has(mask, code)),
                RuleKind::MandatoryIf { if_selected, group } => !self.has(mask, if_selected) || mask & self.group_mask(group) != 0,
                RuleKind::PriceAdjustment { .. } => true,
            })
    }

    pub fn price(&self, mask: Mask) -> i64 {
        let mut total = 0;
        for (index, option) in self.catalog.options.iter().enumerate() {
            if mask & (1 << index) == 0 {
                continue;
            }
            let included = self.catalog.rules.iter().any(|rule| match &rule.kind {
                RuleKind::Package { package, includes } => self.has(mask, package) && includes.contains(&option.code),
                _ => false,
            });
            if included {
                continue;
            }
            total += option.price;
            for rule in &self.catalog.rules {
                if let RuleKind::PriceAdjustment { option: adjusted, when_all, delta } = &rule.kind
                    && *adjusted == option.code
                    && when_all.iter().all(|code| self.has(mask, code))
                {
                    total += delta;
                }
            }
        }
        total
    }

    pub fn completions(&self, picks: Mask) -> impl Iterator<Item = Mask> + '_ {
        self.valid.iter().copied().filter(move |&valid| valid & picks == picks)
    }

    pub fn is_consistent(&self, picks: Mask) -> bool {
        self.completions(picks).next().is_some()
    }

    /// `picks` after picking option `option`: a swap in a single-choice group, else an addition.
    pub fn with_pick(&self, picks: Mask, option: usize) -> Mask {
        let group = &self.catalog.options[option].group;
        let single = self.catalog.groups.iter().any(|g| g.code == *group && g.choice.is_single());
        let base = if single { picks & !self.group_mask(group) } else { picks };
        base | 1 << option
    }

    pub fn state(&self, picks: Mask, option: usize) -> Expected {
        let bit = 1 << option;
        if picks & bit != 0 {
            Expected::Selected
        } else if !self.is_consistent(self.with_pick(picks, option)) {
            Expected::Unavailable
        } else if self.is_consistent(picks) && self.completions(picks).all(|valid| valid & bit != 0) {
            Expected::Required
        } else {
            Expected::Available
        }
    }

    /// Options every valid completion contains, beyond the picks (none if there are none).
    pub fn required(&self, picks: Mask) -> Mask {
        if !self.is_consistent(picks) {
            return 0;
        }
        self.completions(picks).fold(!0, |all, valid| all & valid) & !picks
    }

    /// The documented minimal drop: fewest options of `selection` (never `keep`) to remove for
    /// consistency; among equals, the one whose positions, read from the highest down, are
    /// lexicographically greatest. `None` when even `keep` alone is inconsistent.
    pub fn minimal_drop(&self, selection: Mask, keep: Mask) -> Option<Mask> {
        if !self.is_consistent(keep) {
            return None;
        }
        let droppable = selection & !keep;
        let key = |mask: Mask| (mask.count_ones(), std::cmp::Reverse(descending_positions(mask)));
        (0..=droppable)
            .filter(|&dropped| dropped & !droppable == 0 && self.is_consistent(selection & !dropped))
            .min_by_key(|&dropped| key(dropped))
    }

    pub fn cheapest(&self, picks: Mask) -> Option<i64> {
        self.completions(picks).map(|valid| self.price(valid)).min()
    }
}

fn descending_positions(mask: Mask) -> Vec<u32> {
    (0..32).rev().filter(|bit| mask & (1 << bit) != 0).collect()
}
