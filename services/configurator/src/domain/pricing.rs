//! What a selection costs. The price of a selection is the sum of one line per selected option:
//! nothing if a selected package includes it, otherwise its list price plus the delta of every
//! price adjustment on it whose conditions are all selected. The model's line is the base price.
//! Validation guarantees no line is ever below zero.

use std::collections::HashMap;

use serde::Serialize;

use super::bits::Bits;
use super::catalog::{Catalog, MODEL_GROUP, RuleKind};

/// A total and the lines it adds up from, in minor units of `currency`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Price {
    pub currency: String,
    pub total: i64,
    pub lines: Vec<PriceLine>,
}

/// One line of a price breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PriceLine {
    /// Code of the option the line is about.
    pub option: String,
    /// The option's name, or the adjustment's message.
    pub label: String,
    pub amount: i64,
    #[serde(flatten)]
    pub kind: LineKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineKind {
    /// The model's base price.
    Base,
    /// An option at its list price.
    Option,
    /// An option a selected package includes, at no cost (the first such package in catalog
    /// order is named).
    Included { package: String },
    /// A price adjustment rule applied to the option of the line before.
    Adjustment { rule: String },
}

struct Adjustment {
    rule: usize,
    when_all: Vec<usize>,
    delta: i64,
}

/// Per open package, its share in a lower bound (see [`Pricing::shares`]); few packages are
/// involved at a time, so a list.
pub(crate) struct Shares(Vec<(usize, i64)>);

impl Shares {
    fn of(&self, package: usize) -> i64 {
        self.0.iter().find(|&&(charged, _)| charged == package).map_or(0, |&(_, share)| share)
    }
}

/// The catalog's prices compiled to option indices.
pub(crate) struct Pricing {
    price: Vec<i64>,
    /// Per option: the packages that include it.
    packages_of: Vec<Vec<usize>>,
    /// Per option: the adjustments to its price.
    adjustments_of: Vec<Vec<Adjustment>>,
}

impl Pricing {
    /// Compiles a validated catalog; `options` maps codes to indices in `catalog.options`.
    pub(crate) fn compile(catalog: &Catalog, options: &HashMap<String, usize>) -> Self {
        let var = |code: &String| options.get(code).copied().unwrap_or_default();
        let n = catalog.options.len();
        let mut packages_of = vec![Vec::new(); n];
        let mut adjustments_of: Vec<Vec<Adjustment>> = (0..n).map(|_| Vec::new()).collect();
        for (rule, entry) in catalog.rules.iter().enumerate() {
            match &entry.kind {
                RuleKind::Package { package, includes } => {
                    for included in includes {
                        packages_of[var(included)].push(var(package));
                    }
                }
                RuleKind::PriceAdjustment { option, when_all, delta } => {
                    adjustments_of[var(option)].push(Adjustment { rule, when_all: when_all.iter().map(var).collect(), delta: *delta });
                }
                _ => {}
            }
        }
        for packages in &mut packages_of {
            packages.sort_unstable();
            packages.dedup();
        }
        Self { price: catalog.options.iter().map(|o| o.price).collect(), packages_of, adjustments_of }
    }

    /// The total price of `selected`.
    pub(crate) fn total(&self, selected: &Bits) -> i64 {
        selected.iter().map(|var| self.line(var, selected)).sum()
    }

    /// What the selected option `var` costs within `selected`.
    fn line(&self, var: usize, selected: &Bits) -> i64 {
        if self.including_package(var, selected).is_some() {
            return 0;
        }
        self.price[var] + self.applied(var, selected).map(|adjustment| adjustment.delta).sum::<i64>()
    }

    fn including_package(&self, var: usize, selected: &Bits) -> Option<usize> {
        self.packages_of[var].iter().copied().find(|&package| selected.contains(package))
    }

    fn applied<'a>(&'a self, var: usize, selected: &'a Bits) -> impl Iterator<Item = &'a Adjustment> {
        self.adjustments_of[var].iter().filter(|adjustment| adjustment.when_all.iter().all(|&condition| selected.contains(condition)))
    }

    /// A lower bound on what option `var` costs once selected, in any completion of the partial
    /// assignment `value`, given the package `shares` of [`Pricing::shares`]: free under a
    /// selected package, else the lower of its listed lowest price and the share of an open
    /// package that includes it.
    pub(crate) fn lowest_line(&self, var: usize, value: impl Fn(usize) -> Option<bool> + Copy, shares: &Shares) -> i64 {
        let mut lowest = self.lowest_listed(var, value);
        for &package in &self.packages_of[var] {
            match value(package) {
                Some(true) => return 0,
                Some(false) => {}
                None => lowest = lowest.min(shares.of(package)),
            }
        }
        lowest
    }

    /// What a bound may charge each counted option an open package includes, so that bounds of
    /// distinct options still add up: an option freed by a package is paid for by the package,
    /// so the package's own lowest price is divided among the `counted` options it includes.
    /// Nothing is charged for a package that is itself `exposed` to being counted, or that could
    /// itself be included (and free).
    pub(crate) fn shares(
        &self,
        counted: impl Iterator<Item = usize>,
        exposed: &Bits,
        value: impl Fn(usize) -> Option<bool> + Copy,
    ) -> Shares {
        let mut counts: Vec<(usize, i64)> = Vec::new();
        for var in counted {
            for &package in self.packages_of[var].iter().filter(|&&package| value(package).is_none()) {
                match counts.iter_mut().find(|(counted, _)| *counted == package) {
                    Some((_, count)) => *count += 1,
                    None => counts.push((package, 1)),
                }
            }
        }
        let share = |(package, count): (usize, i64)| {
            let is_charged = !exposed.contains(package) && self.packages_of[package].is_empty();
            (package, if is_charged { self.lowest_listed(package, value) / count } else { 0 })
        };
        Shares(counts.into_iter().map(share).collect())
    }

    /// The lowest price `var` can reach, packages aside: its list price with every discount
    /// that may still apply and every surcharge that must.
    fn lowest_listed(&self, var: usize, value: impl Fn(usize) -> Option<bool>) -> i64 {
        let delta: i64 = self.adjustments_of[var]
            .iter()
            .filter(|adjustment| {
                if adjustment.delta < 0 {
                    adjustment.when_all.iter().all(|&condition| value(condition) != Some(false))
                } else {
                    adjustment.when_all.iter().all(|&condition| value(condition) == Some(true))
                }
            })
            .map(|adjustment| adjustment.delta)
            .sum();
        self.price[var] + delta
    }

    /// An open option whose selection could make the selected option `var` cheaper: a package
    /// that includes it, or the missing condition of a discount. `None` means no completion of
    /// `value` can price `var` below its price when everything open is left out.
    pub(crate) fn saving_for(&self, var: usize, value: impl Fn(usize) -> Option<bool>) -> Option<usize> {
        if self.packages_of[var].iter().any(|&package| value(package) == Some(true)) {
            return None;
        }
        let package = self.packages_of[var].iter().copied().find(|&package| value(package).is_none());
        package.or_else(|| {
            self.adjustments_of[var]
                .iter()
                .filter(|adjustment| adjustment.delta < 0 && adjustment.when_all.iter().all(|&condition| value(condition) != Some(false)))
                .find_map(|adjustment| adjustment.when_all.iter().copied().find(|&condition| value(condition).is_none()))
        })
    }

    /// The line-by-line price of `selected`, in catalog order, each adjustment after its option.
    pub(crate) fn breakdown(&self, catalog: &Catalog, selected: &Bits) -> Price {
        let mut lines = Vec::new();
        for var in selected.iter() {
            let option = &catalog.options[var];
            let line = |amount, kind| PriceLine { option: option.code.clone(), label: option.name.clone(), amount, kind };
            if let Some(package) = self.including_package(var, selected) {
                lines.push(line(0, LineKind::Included { package: catalog.options[package].code.clone() }));
                continue;
            }
            let kind = if option.group == MODEL_GROUP { LineKind::Base } else { LineKind::Option };
            lines.push(line(self.price[var], kind));
            for adjustment in self.applied(var, selected) {
                let rule = &catalog.rules[adjustment.rule];
                lines.push(PriceLine {
                    option: option.code.clone(),
                    label: rule.message.clone(),
                    amount: adjustment.delta,
                    kind: LineKind::Adjustment { rule: rule.id.clone() },
                });
            }
        }
        Price { currency: catalog.currency.clone(), total: lines.iter().map(|line| line.amount).sum(), lines }
    }
}
