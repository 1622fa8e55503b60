//! A validated catalog compiled to what the search works on: one boolean variable per option
//! (its dense index), a clause per logical rule, and a cardinality bound per group.
//!
//! Every clause has at least one negative literal (each rule starts from "if this option is
//! selected"), so the all-false assignment satisfies every clause: the cheapest-completion search
//! relies on it to complete a partial assignment by leaving every open option out.

use std::collections::HashMap;

use super::bits::Bits;
use super::catalog::{Catalog, RuleKind};

/// An option being selected (positive) or not selected (negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lit(u32);

impl Lit {
    pub(crate) fn new(var: usize, selected: bool) -> Self {
        // Catalogs with more than two billion options are not a concern.
        Self(((var as u32) << 1) | u32::from(!selected))
    }

    pub(crate) fn var(self) -> usize {
        (self.0 >> 1) as usize
    }

    /// Whether the literal says "selected".
    pub(crate) fn is_positive(self) -> bool {
        self.0 & 1 == 0
    }

    fn index(self) -> usize {
        self.0 as usize
    }
}

/// At least one literal holds. `rule` is the catalog rule it comes from.
pub(crate) struct Clause {
    pub(crate) lits: Vec<Lit>,
    pub(crate) rule: usize,
}

/// Between `min` and `max` of `vars` are selected: one per catalog group, same index.
pub(crate) struct Cardinality {
    pub(crate) vars: Vec<usize>,
    pub(crate) min: u32,
    pub(crate) max: u32,
    /// A single-choice group, where a new pick replaces the old one.
    pub(crate) is_single: bool,
}

pub(crate) struct Constraints {
    pub(crate) var_count: usize,
    pub(crate) clauses: Vec<Clause>,
    pub(crate) groups: Vec<Cardinality>,
    pub(crate) group_of: Vec<usize>,
    /// Per literal index: the clauses that contain the literal.
    occurrences: Vec<Vec<usize>>,
}

impl Constraints {
    /// Compiles a catalog that passed [`Catalog::validate`]; `options` maps option codes to
    /// their index in `catalog.options`.
    pub(crate) fn compile(catalog: &Catalog, options: &HashMap<String, usize>) -> Self {
        let var = |code: &String| options.get(code).copied().unwrap_or_default();
        let group_index: HashMap<&str, usize> = catalog.groups.iter().enumerate().map(|(i, g)| (g.code.as_str(), i)).collect();
        let group_of: Vec<usize> = catalog.options.iter().map(|o| group_index.get(o.group.as_str()).copied().unwrap_or_default()).collect();
        let groups: Vec<Cardinality> = catalog
            .groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                let vars: Vec<usize> = (0..group_of.len()).filter(|&o| group_of[o] == g).collect();
                let (min, max) = group.choice.bounds(vars.len());
                Cardinality { vars, min, max, is_single: group.choice.is_single() }
            })
            .collect();
        let mut clauses = Vec::new();
        for (rule, entry) in catalog.rules.iter().enumerate() {
            let mut add = |lits: Vec<Lit>| clauses.push(Clause { lits, rule });
            match &entry.kind {
                RuleKind::Requires { if_selected, then_any_of } => {
                    add(implication(var(if_selected), then_any_of.iter().map(var)));
                }
                RuleKind::Excludes { a, b } => add(vec![Lit::new(var(a), false), Lit::new(var(b), false)]),
                RuleKind::Package { package, includes } => {
                    for included in includes {
                        add(implication(var(package), [var(included)]));
                    }
                }
                RuleKind::MandatoryIf { if_selected, group } => {
                    let members = group_index.get(group.as_str()).map(|&g| groups[g].vars.clone()).unwrap_or_default();
                    add(implication(var(if_selected), members));
                }
                RuleKind::PriceAdjustment { .. } => {}
            }
        }
        let mut occurrences = vec![Vec::new(); 2 * group_of.len()];
        for (index, clause) in clauses.iter().enumerate() {
            for lit in &clause.lits {
                occurrences[lit.index()].push(index);
            }
        }
        Self { var_count: group_of.len(), clauses, groups, group_of, occurrences }
    }

    /// The clauses that contain `lit`.
    pub(crate) fn occurrences(&self, lit: Lit) -> &[usize] {
        &self.occurrences[lit.index()]
    }

    /// Whether a complete selection satisfies every clause and group bound.
    pub(crate) fn is_satisfied_by(&self, selected: &Bits) -> bool {
        self.clauses.iter().all(|clause| clause_holds(clause, selected)) && self.groups.iter().all(|group| group_holds(group, selected))
    }

    /// Whether `selected` satisfies everything, given that it differs from a selection that did
    /// only in `changed`: only the constraints that mention a changed option need a look.
    pub(crate) fn still_satisfied(&self, selected: &Bits, changed: &[usize]) -> bool {
        changed.iter().all(|&var| {
            group_holds(&self.groups[self.group_of[var]], selected)
                && [true, false]
                    .into_iter()
                    .all(|sign| self.occurrences(Lit::new(var, sign)).iter().all(|&clause| clause_holds(&self.clauses[clause], selected)))
        })
    }
}

/// `if_selected ⇒ any of then`, as a clause.
fn implication(if_selected: usize, then: impl IntoIterator<Item = usize>) -> Vec<Lit> {
    std::iter::once(Lit::new(if_selected, false)).chain(then.into_iter().map(|var| Lit::new(var, true))).collect()
}

fn clause_holds(clause: &Clause, selected: &Bits) -> bool {
    clause.lits.iter().any(|lit| selected.contains(lit.var()) == lit.is_positive())
}

fn group_holds(group: &Cardinality, selected: &Bits) -> bool {
    let count = group.vars.iter().filter(|&&var| selected.contains(var)).count() as u32;
    (group.min..=group.max).contains(&count)
}
