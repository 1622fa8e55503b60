//! The cheapest valid completion of the picks, by branch and bound.
//!
//! The search only selects what something needs: a group below its minimum, or a rule whose
//! conditions are selected but none of whose options are yet. It branches on the need with the
//! fewest ways to meet it (the costliest of those), on its cheapest option, first selecting it,
//! then ruling it out. When
//! nothing is needed, leaving every open option out is a valid completion (every clause has a
//! negative literal) and is priced. Because packages and discounts can make a selection cheaper
//! by adding to it, it then branches on an open option that could lower a selected option's
//! price, until there is none.
//!
//! The lower bound adds up, without counting any option twice: the lowest price each selected
//! option can still reach, the cheapest options each short group still lacks (groups are
//! disjoint), and the cheapest way to meet the costliest rule need outside short groups. Lines
//! are never below zero, so it never overestimates; subtrees that cannot beat the best
//! completion found so far are cut.
//!
//! Finding the cheapest completion is NP-hard, and proving a completion cheapest can take far
//! longer than finding it, while a live screen needs an answer within a couple of milliseconds.
//! So after its first completion the search gets [`EFFORT`] more nodes; if it runs out it
//! returns the cheapest completion found so far, marked as not proven.

use super::bits::Bits;
use super::constraints::{Constraints, Lit};
use super::pricing::Pricing;
use super::search::Search;

/// Nodes the search may visit after its first completion: about a millisecond on the
/// benchmark catalog (300 options, 1,000 rules).
pub(crate) const EFFORT: usize = 1_000;

/// The cheapest completion found.
pub(crate) struct Cheapest {
    pub(crate) selected: Bits,
    /// Whether the search finished, proving no valid completion is cheaper.
    pub(crate) is_proven: bool,
}

/// The cheapest valid configuration containing `picks`, or `None` if no valid configuration
/// contains them. Among equally cheap ones, the first the search meets.
pub(crate) fn cheapest_completion(constraints: &Constraints, pricing: &Pricing, picks: &Bits) -> Option<Cheapest> {
    let mut search = Search::new(constraints);
    search.assume_all(picks).ok()?;
    let mut bound = BranchAndBound { search, constraints, pricing, best: None, effort_left: EFFORT, is_exhausted: false };
    bound.explore();
    let (selected, _) = bound.best?;
    Some(Cheapest { selected, is_proven: !bound.is_exhausted })
}

struct BranchAndBound<'a> {
    search: Search<'a>,
    constraints: &'a Constraints,
    pricing: &'a Pricing,
    best: Option<(Bits, i64)>,
    effort_left: usize,
    is_exhausted: bool,
}

/// An open option and the lowest price it can reach once selected.
#[derive(Clone, Copy)]
struct Candidate {
    cost: i64,
    var: usize,
}

/// What the current partial assignment still needs.
struct Needs {
    /// Short groups and how many options each lacks.
    groups: Vec<(usize, usize)>,
    /// Rules that leaving every open option out would violate.
    clauses: Vec<usize>,
    /// Open options of the short groups and needy clauses: those the bound may count.
    exposed: Bits,
}

impl BranchAndBound<'_> {
    fn explore(&mut self) {
        if self.best.is_some() {
            if self.effort_left == 0 {
                self.is_exhausted = true;
                return;
            }
            self.effort_left -= 1;
        }
        let (bound, need) = self.survey();
        if self.best.as_ref().is_some_and(|&(_, best)| bound >= best) {
            return;
        }
        let var = match need {
            Some(candidate) => candidate.var,
            None => {
                self.record();
                match self.saving() {
                    Some(var) => var,
                    None => return,
                }
            }
        };
        for value in [true, false] {
            let level = self.search.level();
            if self.search.decide(var, value).is_ok() {
                self.explore();
            }
            self.search.backtrack_to(level);
        }
    }

    /// Prices the completion that leaves every open option out.
    fn record(&mut self) {
        let selected = self.search.selected();
        let cost = self.pricing.total(&selected);
        if self.best.as_ref().is_none_or(|&(_, best)| cost < best) {
            self.best = Some((selected, cost));
        }
    }

    fn value(&self, var: usize) -> Option<bool> {
        self.search.value(var)
    }

    fn needs(&self) -> Needs {
        let mut groups = Vec::new();
        let mut exposed = Bits::with_capacity(self.constraints.var_count);
        for (index, group) in self.constraints.groups.iter().enumerate() {
            let missing = (group.min as usize).saturating_sub(self.search.selected_in(index));
            if missing > 0 {
                groups.push((index, missing));
                group.vars.iter().filter(|&&var| self.value(var).is_none()).for_each(|&var| exposed.insert(var));
            }
        }
        let mut clauses = Vec::new();
        for &var in self.search.trail().iter().filter(|&&var| self.value(var) == Some(true)) {
            for &clause in self.constraints.occurrences(Lit::new(var, false)) {
                if self.search.is_needy(clause) && !clauses.contains(&clause) {
                    clauses.push(clause);
                    self.open_options(clause).for_each(|var| exposed.insert(var));
                }
            }
        }
        Needs { groups, clauses, exposed }
    }

    fn open_options(&self, clause: usize) -> impl Iterator<Item = usize> + '_ {
        self.constraints.clauses[clause].lits.iter().map(|lit| lit.var()).filter(|&var| self.value(var).is_none())
    }

    /// The lower bound, and the option to branch on next, if anything is needed: the cheapest
    /// way to meet the need with the fewest ways to meet it, the costliest such need first.
    fn survey(&self) -> (i64, Option<Candidate>) {
        let needs = self.needs();
        let value = |var| self.search.value(var);
        let selected: Vec<usize> = self.search.trail().iter().copied().filter(|&var| value(var) == Some(true)).collect();
        let shares = self.pricing.shares(selected.iter().copied().chain(needs.exposed.iter()), &needs.exposed, value);
        let candidate = |var| Candidate { cost: self.pricing.lowest_line(var, value, &shares), var };
        let mut bound: i64 = selected.iter().map(|&var| candidate(var).cost).sum();
        let mut branch: Option<(usize, Candidate)> = None;
        let mut prefer = |ways: usize, cheapest: Candidate| {
            let key = |ways: usize, need: Candidate| (ways, std::cmp::Reverse(need.cost));
            if branch.is_none_or(|(fewest, chosen)| key(ways, cheapest) < key(fewest, chosen)) {
                branch = Some((ways, cheapest));
            }
        };
        let mut short = Bits::default();
        for &(group, missing) in &needs.groups {
            short.insert(group);
            let vars = &self.constraints.groups[group].vars;
            let mut open: Vec<Candidate> = vars.iter().copied().filter(|&var| value(var).is_none()).map(candidate).collect();
            open.sort_unstable_by_key(|c| (c.cost, c.var));
            bound += open.iter().take(missing).map(|c| c.cost).sum::<i64>();
            if let Some(&cheapest) = open.first() {
                prefer(open.len(), cheapest);
            }
        }
        let mut costliest_rule_need = 0;
        for &clause in &needs.clauses {
            let open: Vec<Candidate> = self.open_options(clause).map(candidate).collect();
            if let Some(&cheapest) = open.iter().min_by_key(|c| (c.cost, c.var)) {
                prefer(open.len(), cheapest);
                if open.iter().all(|c| !short.contains(self.constraints.group_of[c.var])) {
                    costliest_rule_need = costliest_rule_need.max(cheapest.cost);
                }
            }
        }
        bound += costliest_rule_need;
        (bound, branch.map(|(_, cheapest)| cheapest))
    }

    /// An open option whose selection could lower the price of a selected one.
    fn saving(&self) -> Option<usize> {
        let value = |var| self.search.value(var);
        self.search.trail().iter().filter(|&&var| value(var) == Some(true)).find_map(|&var| self.pricing.saving_for(var, value))
    }
}
