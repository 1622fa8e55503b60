//! The state of every option for a partial selection (the picks), with few searches.
//!
//! An option not picked is judged against what picking it would mean: in a single-choice group
//! that already holds a pick, picking replaces it (a *swap group*); anywhere else it is added.
//! It is unavailable when no valid configuration contains that selection, and required when
//! every valid configuration containing the picks contains it.
//!
//! Every model found proves each of its options available and each option it leaves out not
//! required, so most options are settled by a handful of models. Before searching for one more,
//! a known model is changed locally (the option added or swapped in, or taken out or swapped
//! out) and checked against the few constraints that mention what changed. Only options that
//! propagation and local moves cannot settle cost a search of their own.

use super::bits::Bits;
use super::constraints::{Constraints, Lit};
use super::search::{Core, Search};

/// Known models tried for a local move before searching.
const LOCAL_TRIES: usize = 8;

pub(crate) enum Judgement {
    Selected,
    Available,
    Required(Core),
    Unavailable(Core),
}

pub(crate) struct Analysis {
    /// One per option, in catalog order.
    pub(crate) judgements: Vec<Judgement>,
    /// Why the picks have no valid completion, if they have none.
    pub(crate) conflict: Option<Core>,
}

/// Judges every option for `picks`.
pub(crate) fn judge(constraints: &Constraints, picks: &Bits) -> Analysis {
    let mut judge = Judge { constraints, picks, search: Search::new(constraints), judgements: Vec::new(), models: Vec::new() };
    judge.judgements.resize_with(constraints.var_count, || None);
    for var in picks.iter() {
        judge.judgements[var] = Some(Judgement::Selected);
    }
    let swap_groups: Vec<usize> = (0..constraints.groups.len()).filter(|&g| judge.is_swap_group(g)).collect();
    let conflict = judge.free_options(&swap_groups).err();
    for group in swap_groups {
        judge.swap_group(group);
    }
    let judgements = judge.judgements.into_iter().map(|judgement| judgement.unwrap_or(Judgement::Available)).collect();
    Analysis { judgements, conflict }
}

struct Judge<'a> {
    constraints: &'a Constraints,
    picks: &'a Bits,
    search: Search<'a>,
    judgements: Vec<Option<Judgement>>,
    /// Models of the picks found so far.
    models: Vec<Bits>,
}

impl Judge<'_> {
    fn is_swap_group(&self, group: usize) -> bool {
        let bounds = &self.constraints.groups[group];
        bounds.is_single && bounds.vars.iter().any(|&var| self.picks.contains(var))
    }

    /// Judges the options outside swap groups, against the picks plus the option. Fails with
    /// the picks' conflict when they have no model.
    fn free_options(&mut self, swap_groups: &[usize]) -> Result<(), Core> {
        let free: Vec<usize> = (0..self.constraints.var_count)
            .filter(|&var| !self.picks.contains(var) && !swap_groups.contains(&self.constraints.group_of[var]))
            .collect();
        let models = self.search.assume_all(self.picks).and_then(|()| self.search.solve(&Bits::default()));
        let lean = models.inspect_err(|core| {
            for &var in &free {
                self.judgements[var] = Some(Judgement::Unavailable(core.clone()));
            }
        })?;
        let mut open = Bits::with_capacity(self.constraints.var_count);
        for &var in &free {
            match self.search.value(var) {
                Some(true) => self.judgements[var] = Some(Judgement::Required(self.search.explain(var))),
                Some(false) => self.judgements[var] = Some(Judgement::Unavailable(self.search.explain(var))),
                None => open.insert(var),
            }
        }
        // A model selecting as many open options as it can proves many available at once.
        // The picks have a model, so this search finds one; `lean` stands in if not.
        let rich = self.search.solve(&open).unwrap_or_else(|_| lean.clone());
        let mut unproven = open.clone();
        unproven.difference_with(&lean);
        unproven.difference_with(&rich);
        let mut always = open.clone();
        always.intersect_with(&lean);
        always.intersect_with(&rich);
        self.models = vec![lean, rich];
        self.settle_availability(&open, &mut unproven, &mut always);
        self.settle_requirement(always);
        Ok(())
    }

    /// Proves each open option available (some model contains it) or unavailable.
    fn settle_availability(&mut self, open: &Bits, unproven: &mut Bits, always: &mut Bits) {
        let level = self.search.level();
        for var in open.iter() {
            if !unproven.contains(var) {
                continue;
            }
            let found = match self.models.iter().rev().take(LOCAL_TRIES).find_map(|model| self.with_option(model, var)) {
                Some(model) => Ok(model),
                None => {
                    let found = self.search.assume(Lit::new(var, true)).and_then(|()| self.search.solve(unproven));
                    self.search.backtrack_to(level);
                    found
                }
            };
            match found {
                Ok(model) => {
                    unproven.difference_with(&model);
                    always.intersect_with(&model);
                    self.models.push(model);
                }
                Err(core) => {
                    unproven.remove(var);
                    self.judgements[var] = Some(Judgement::Unavailable(core));
                }
            }
        }
    }

    /// Proves each option of `always` (in every model so far) required, or finds a model
    /// without it.
    fn settle_requirement(&mut self, mut always: Bits) {
        let level = self.search.level();
        for var in always.clone().iter() {
            if !always.contains(var) {
                continue;
            }
            let found = match self.models.iter().rev().take(LOCAL_TRIES).find_map(|model| self.without_option(model, var)) {
                Some(model) => Ok(model),
                None => {
                    let found = self.search.assume(Lit::new(var, false)).and_then(|()| self.search.solve(&Bits::default()));
                    self.search.backtrack_to(level);
                    found
                }
            };
            match found {
                Ok(model) => {
                    always.intersect_with(&model);
                    self.models.push(model);
                }
                Err(core) => self.judgements[var] = Some(Judgement::Required(core)),
            }
        }
    }

    /// Judges the options of a single-choice group holding a pick, each against the picks with
    /// the group's pick replaced by it. Such an option is never required.
    fn swap_group(&mut self, group: usize) {
        let members = &self.constraints.groups[group].vars;
        let mut others = self.picks.clone();
        for &var in members {
            others.remove(var);
        }
        self.search.backtrack_to(0);
        if let Err(core) = self.search.assume_all(&others) {
            for &var in members.iter().filter(|&&var| !self.picks.contains(var)) {
                self.judgements[var] = Some(Judgement::Unavailable(core.clone()));
            }
            return;
        }
        let level = self.search.level();
        // Models of the picks, and the models found here, stay models of `others`.
        let mut models: Vec<Bits> = self.models.iter().rev().take(LOCAL_TRIES).cloned().collect();
        for &var in members.iter().filter(|&&var| !self.picks.contains(var)) {
            if self.search.value(var) == Some(false) {
                self.judgements[var] = Some(Judgement::Unavailable(self.search.explain(var)));
                continue;
            }
            let local = models.iter().rev().take(LOCAL_TRIES).find_map(|model| self.swapped_in(model, group, var));
            let found = match local {
                Some(model) => Ok(model),
                None => {
                    let found = self.search.assume(Lit::new(var, true)).and_then(|()| self.search.solve(&Bits::default()));
                    self.search.backtrack_to(level);
                    found
                }
            };
            match found {
                Ok(model) => models.push(model),
                Err(core) => self.judgements[var] = Some(Judgement::Unavailable(core)),
            }
        }
    }

    /// `model` with `var` added, replacing its group's choice when the group takes one, if that
    /// is still a model of the picks.
    fn with_option(&self, model: &Bits, var: usize) -> Option<Bits> {
        let group = self.constraints.group_of[var];
        if self.constraints.groups[group].max == 1 {
            return self.swapped_in(model, group, var).filter(|changed| self.picks.is_subset(changed));
        }
        let mut changed = model.clone();
        changed.insert(var);
        self.constraints.still_satisfied(&changed, &[var]).then_some(changed)
    }

    /// `model` with `var` as the only option of `group`, if that is still a model of whatever
    /// `model` was a model of outside the group.
    fn swapped_in(&self, model: &Bits, group: usize, var: usize) -> Option<Bits> {
        let mut changed = model.clone();
        let mut touched = vec![var];
        for &member in &self.constraints.groups[group].vars {
            if member != var && changed.contains(member) {
                changed.remove(member);
                touched.push(member);
            }
        }
        changed.insert(var);
        self.constraints.still_satisfied(&changed, &touched).then_some(changed)
    }

    /// `model` without `var` (or with another option of its group instead), if that is still a
    /// model of the picks.
    fn without_option(&self, model: &Bits, var: usize) -> Option<Bits> {
        let mut changed = model.clone();
        changed.remove(var);
        if self.constraints.still_satisfied(&changed, &[var]) {
            return Some(changed);
        }
        let group = self.constraints.group_of[var];
        self.constraints.groups[group].vars.iter().filter(|&&other| other != var && !self.picks.contains(other)).find_map(|&other| {
            let mut swapped = changed.clone();
            swapped.insert(other);
            self.constraints.still_satisfied(&swapped, &[var, other]).then_some(swapped)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::domain::generate::{Spec, catalog};

    #[derive(Debug, PartialEq, Eq)]
    enum Kind {
        Selected,
        Available,
        Required,
        Unavailable,
    }

    fn kind(judgement: &Judgement) -> Kind {
        match judgement {
            Judgement::Selected => Kind::Selected,
            Judgement::Available => Kind::Available,
            Judgement::Required(_) => Kind::Required,
            Judgement::Unavailable(_) => Kind::Unavailable,
        }
    }

    fn has_model(constraints: &Constraints, assumed: &[Lit]) -> bool {
        let mut search = Search::new(constraints);
        assumed.iter().all(|&lit| search.assume(lit).is_ok()) && search.solve(&Bits::default()).is_ok()
    }

    /// The definition, one search per question.
    fn reference(constraints: &Constraints, picks: &Bits, var: usize) -> Kind {
        if picks.contains(var) {
            return Kind::Selected;
        }
        let group = &constraints.groups[constraints.group_of[var]];
        let picked: Vec<Lit> = picks
            .iter()
            .filter(|&pick| !(group.is_single && group.vars.contains(&pick)))
            .map(|pick| Lit::new(pick, true))
            .chain([Lit::new(var, true)])
            .collect();
        let all_picks: Vec<Lit> = picks.iter().map(|pick| Lit::new(pick, true)).collect();
        if !has_model(constraints, &picked) {
            Kind::Unavailable
        } else if has_model(constraints, &all_picks) && !has_model(constraints, &[all_picks.clone(), vec![Lit::new(var, false)]].concat()) {
            Kind::Required
        } else {
            Kind::Available
        }
    }

    #[test]
    fn states_on_generated_catalogs_match_one_search_per_question() {
        let mut rng = StdRng::seed_from_u64(11);
        for seed in 0..6 {
            let catalog = catalog(&Spec { models: 3, groups: 10, options: 60, rules: 150, seed });
            let index: HashMap<String, usize> = catalog.options.iter().enumerate().map(|(i, o)| (o.code.clone(), i)).collect();
            let constraints = Constraints::compile(&catalog, &index);
            for _ in 0..15 {
                let picks: Bits = (0..rng.random_range(0..=5)).map(|_| rng.random_range(0..60)).collect();
                let analysis = judge(&constraints, &picks);
                for (var, judgement) in analysis.judgements.iter().enumerate() {
                    assert_eq!(kind(judgement), reference(&constraints, &picks, var), "seed {seed}, option {var}");
                }
            }
        }
    }
}
