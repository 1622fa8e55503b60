//! The search engine: unit propagation over clauses and group bounds, plus a depth-first search
//! with conflict-directed backjumping. Catalogs are small and loosely constrained, so no clause
//! learning: propagation settles most questions, and a search rarely backtracks.
//!
//! Every assigned option remembers why (an assumption, a decision, or the clause or group that
//! implied it), so any conflict can be traced back to the assumptions and rules behind it: a
//! [`Core`]. Refutations combine the cores of both branches, which makes the core of a failed
//! search an unsatisfiable subset of the assumptions and constraints — sufficient, though not
//! necessarily minimal — and tells the search which decisions a conflict did not depend on, so
//! it can jump over them.

use super::bits::Bits;
use super::constraints::{Constraints, Lit};

#[derive(Clone, Copy)]
enum Reason {
    Assumption,
    Decision,
    Clause(usize),
    Group(usize),
}

/// A constraint with no way left to hold.
#[derive(Clone, Copy)]
enum Conflict {
    Clause(usize),
    Group(usize),
}

/// Why some assumptions have no model: the assumed options and the rules and groups a
/// refutation used.
#[derive(Clone, Debug, Default)]
pub(crate) struct Core {
    pub(crate) assumptions: Bits,
    pub(crate) rules: Bits,
    pub(crate) groups: Bits,
    /// Decisions the refutation still depends on; empty once a search is over.
    decisions: Bits,
}

impl Core {
    fn union_with(&mut self, other: &Core) {
        self.assumptions.union_with(&other.assumptions);
        self.rules.union_with(&other.rules);
        self.groups.union_with(&other.groups);
        self.decisions.union_with(&other.decisions);
    }
}

/// A model containing every option of `selected`, or why there is none.
pub(crate) fn find_model(constraints: &Constraints, selected: &Bits) -> Result<Bits, Core> {
    let mut search = Search::new(constraints);
    search.assume_all(selected)?;
    search.solve(&Bits::default())
}

/// A partial assignment of the options, organised in levels that are undone last-in first-out.
pub(crate) struct Search<'c> {
    constraints: &'c Constraints,
    value: Vec<Option<bool>>,
    reason: Vec<Reason>,
    /// Position of each assigned option on the trail.
    position: Vec<usize>,
    trail: Vec<usize>,
    /// Trail length when each level began.
    levels: Vec<usize>,
    /// Trail entries before this one have been propagated.
    propagated: usize,
    /// `seen[var] == stamp` marks options visited by the current trace.
    seen: Vec<u32>,
    stamp: u32,
    /// Per group: how many of its options are selected, and how many are open.
    selected_in: Vec<u32>,
    open_in: Vec<u32>,
}

impl<'c> Search<'c> {
    pub(crate) fn new(constraints: &'c Constraints) -> Self {
        let n = constraints.var_count;
        Self {
            constraints,
            value: vec![None; n],
            reason: vec![Reason::Decision; n],
            position: vec![0; n],
            trail: Vec::with_capacity(n),
            levels: Vec::new(),
            propagated: 0,
            seen: vec![0; n],
            stamp: 0,
            selected_in: vec![0; constraints.groups.len()],
            open_in: constraints.groups.iter().map(|group| group.vars.len() as u32).collect(),
        }
    }

    pub(crate) fn value(&self, var: usize) -> Option<bool> {
        self.value[var]
    }

    /// How many options of `group` are selected.
    pub(crate) fn selected_in(&self, group: usize) -> usize {
        self.selected_in[group] as usize
    }

    pub(crate) fn level(&self) -> usize {
        self.levels.len()
    }

    /// The options assigned so far, in assignment order.
    pub(crate) fn trail(&self) -> &[usize] {
        &self.trail
    }

    /// The selected options of the current assignment.
    pub(crate) fn selected(&self) -> Bits {
        let mut selected = Bits::with_capacity(self.value.len());
        for &var in &self.trail {
            if self.value[var] == Some(true) {
                selected.insert(var);
            }
        }
        selected
    }

    /// Assumes `lit` on a new level and propagates. On a conflict nothing changes and the
    /// reason comes back.
    pub(crate) fn assume(&mut self, lit: Lit) -> Result<(), Core> {
        self.enter(lit, Reason::Assumption)
    }

    /// Assumes every option of `selected`, each on its own level.
    pub(crate) fn assume_all(&mut self, selected: &Bits) -> Result<(), Core> {
        selected.iter().try_for_each(|var| self.assume(Lit::new(var, true)))
    }

    /// Tries `var = value` as a search decision on a new level, as [`Search::assume`] does.
    pub(crate) fn decide(&mut self, var: usize, value: bool) -> Result<(), Core> {
        self.enter(Lit::new(var, value), Reason::Decision)
    }

    /// Undoes every level above `level`.
    pub(crate) fn backtrack_to(&mut self, level: usize) {
        if let Some(&start) = self.levels.get(level) {
            for &var in &self.trail[start..] {
                let group = self.constraints.group_of[var];
                self.open_in[group] += 1;
                if self.value[var] == Some(true) {
                    self.selected_in[group] -= 1;
                }
                self.value[var] = None;
            }
            self.trail.truncate(start);
            self.levels.truncate(level);
            self.propagated = self.propagated.min(start);
        }
    }

    /// Why `var` has its current value: the assumptions and constraints that imply it.
    pub(crate) fn explain(&mut self, var: usize) -> Core {
        let mut core = Core::default();
        self.trace(&mut core, vec![var]);
        core
    }

    /// Looks for a model of the current assignment, preferring to select the options in
    /// `prefer_selected` and to leave the others out. Returns the model's selected options, or
    /// a core if there is none. The assignment is left as it was.
    pub(crate) fn solve(&mut self, prefer_selected: &Bits) -> Result<Bits, Core> {
        let level = self.level();
        let outcome = self.descend(0, prefer_selected).map(|()| self.selected());
        self.backtrack_to(level);
        outcome
    }

    /// Decides the open options in catalog order from `from` on.
    fn descend(&mut self, from: usize, prefer_selected: &Bits) -> Result<(), Core> {
        let Some(var) = (from..self.value.len()).find(|&var| self.value[var].is_none()) else {
            return Ok(());
        };
        let first = prefer_selected.contains(var);
        let mut refutation = Core::default();
        for value in [first, !first] {
            let level = self.level();
            match self.decide(var, value).and_then(|()| self.descend(var + 1, prefer_selected)) {
                Ok(()) => return Ok(()),
                Err(core) => {
                    self.backtrack_to(level);
                    if !core.decisions.contains(var) {
                        // The conflict does not depend on this decision: the other value fails too.
                        return Err(core);
                    }
                    refutation.union_with(&core);
                }
            }
        }
        refutation.decisions.remove(var);
        Err(refutation)
    }

    /// Whether leaving every open option out would violate `clause`. Every clause has a
    /// negative literal, so only clauses of selected options can be needy.
    pub(crate) fn is_needy(&self, clause: usize) -> bool {
        !self.constraints.clauses[clause].lits.iter().any(|&lit| match self.value[lit.var()] {
            Some(value) => value == lit.is_positive(),
            None => !lit.is_positive(),
        })
    }

    fn enter(&mut self, lit: Lit, reason: Reason) -> Result<(), Core> {
        let var = lit.var();
        match self.value[var] {
            Some(value) if value == lit.is_positive() => {
                self.levels.push(self.trail.len());
                Ok(())
            }
            Some(_) => {
                let mut core = self.explain(var);
                add_reason(&mut core, reason, var);
                Err(core)
            }
            None => {
                let level = self.level();
                self.levels.push(self.trail.len());
                self.assign(var, lit.is_positive(), reason);
                self.propagate().inspect_err(|_| self.backtrack_to(level))
            }
        }
    }

    fn assign(&mut self, var: usize, value: bool, reason: Reason) {
        let group = self.constraints.group_of[var];
        self.open_in[group] -= 1;
        self.selected_in[group] += u32::from(value);
        self.value[var] = Some(value);
        self.reason[var] = reason;
        self.position[var] = self.trail.len();
        self.trail.push(var);
    }

    fn propagate(&mut self) -> Result<(), Core> {
        let constraints = self.constraints;
        while let Some(&var) = self.trail.get(self.propagated) {
            self.propagated += 1;
            let falsified = Lit::new(var, self.value[var] != Some(true));
            for &clause in constraints.occurrences(falsified) {
                self.check_clause(clause).map_err(|conflict| self.analyze(conflict))?;
            }
            self.check_group(constraints.group_of[var]).map_err(|conflict| self.analyze(conflict))?;
        }
        Ok(())
    }

    fn lit_value(&self, lit: Lit) -> Option<bool> {
        self.value[lit.var()].map(|value| value == lit.is_positive())
    }

    fn check_clause(&mut self, clause: usize) -> Result<(), Conflict> {
        let constraints = self.constraints;
        let lits = &constraints.clauses[clause].lits;
        let mut open = None;
        let mut open_count = 0;
        for &lit in lits {
            match self.lit_value(lit) {
                Some(true) => return Ok(()),
                Some(false) => {}
                None => {
                    open = Some(lit);
                    open_count += 1;
                }
            }
        }
        match (open_count, open) {
            (0, _) => Err(Conflict::Clause(clause)),
            (1, Some(lit)) => {
                self.assign(lit.var(), lit.is_positive(), Reason::Clause(clause));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_group(&mut self, group: usize) -> Result<(), Conflict> {
        let constraints = self.constraints;
        let bounds = &constraints.groups[group];
        let (selected, open) = (self.selected_in[group], self.open_in[group]);
        if selected > bounds.max || selected + open < bounds.min {
            return Err(Conflict::Group(group));
        }
        let fill = if open == 0 {
            None
        } else if selected == bounds.max {
            Some(false)
        } else if selected + open == bounds.min {
            Some(true)
        } else {
            None
        };
        if let Some(value) = fill {
            for &var in &bounds.vars {
                if self.value[var].is_none() {
                    self.assign(var, value, Reason::Group(group));
                }
            }
        }
        Ok(())
    }

    fn analyze(&mut self, conflict: Conflict) -> Core {
        let mut core = Core::default();
        let start = match conflict {
            Conflict::Clause(clause) => {
                core.rules.insert(self.constraints.clauses[clause].rule);
                self.constraints.clauses[clause].lits.iter().map(|lit| lit.var()).collect()
            }
            Conflict::Group(group) => {
                core.groups.insert(group);
                let bounds = &self.constraints.groups[group];
                let too_many = bounds.vars.iter().filter(|&&var| self.value[var] == Some(true)).count() as u32 > bounds.max;
                bounds.vars.iter().copied().filter(|&var| self.value[var] == Some(too_many)).collect()
            }
        };
        self.trace(&mut core, start);
        core
    }

    /// Adds to `core` everything the values of `pending` rest on, walking reasons back to
    /// assumptions and decisions.
    fn trace(&mut self, core: &mut Core, mut pending: Vec<usize>) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.fill(0);
            self.stamp = 1;
        }
        while let Some(var) = pending.pop() {
            if self.seen[var] == self.stamp || self.value[var].is_none() {
                continue;
            }
            self.seen[var] = self.stamp;
            let reason = self.reason[var];
            add_reason(core, reason, var);
            match reason {
                Reason::Assumption | Reason::Decision => {}
                Reason::Clause(clause) => {
                    core.rules.insert(self.constraints.clauses[clause].rule);
                    pending.extend(self.constraints.clauses[clause].lits.iter().map(|lit| lit.var()).filter(|&other| other != var));
                }
                Reason::Group(group) => {
                    core.groups.insert(group);
                    // Implied false because the group was full, or true because the rest was out:
                    // either way by the earlier members holding the opposite value.
                    let opposite = self.value[var].map(|value| !value);
                    let before = self.position[var];
                    pending.extend(
                        self.constraints.groups[group]
                            .vars
                            .iter()
                            .copied()
                            .filter(|&other| self.value[other] == opposite && self.position[other] < before),
                    );
                }
            }
        }
    }
}

fn add_reason(core: &mut Core, reason: Reason, var: usize) {
    match reason {
        Reason::Assumption => core.assumptions.insert(var),
        Reason::Decision => core.decisions.insert(var),
        Reason::Clause(_) | Reason::Group(_) => {}
    }
}
