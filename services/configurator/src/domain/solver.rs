//! The configurator: a validated catalog compiled once (per catalog version) and then asked,
//! for any partial selection, which options remain possible and why, what it costs, the
//! cheapest way to complete it, and the least to give up when a pick conflicts.
//!
//! Semantics, for picks `P` (the options the customer chose, in any order):
//!
//! - A *complete* selection is *valid* when every group holds between its minimum and maximum
//!   (a single-choice group at most one, exactly one when required) and every rule holds.
//! - `P` is *consistent* when some valid selection contains it (a *valid completion*).
//! - An option `o` not in `P` is judged against `P'`: `P` with the other picks of `o`'s group
//!   replaced by `o` if the group is single-choice (picking swaps, as in any configurator),
//!   otherwise `P` plus `o`. It is *unavailable* when `P'` has no valid completion, *required*
//!   when `P` is consistent and every valid completion of `P` contains it, and *available*
//!   otherwise. Options in `P` are *selected*.
//! - Reasons name the picks, rules and group bounds a refutation used: always enough to prove
//!   the state, not always the fewest.

use std::collections::HashMap;

use serde::Serialize;

use super::bits::Bits;
use super::catalog::{Catalog, CatalogOption, InvalidCatalog, MODEL_GROUP};
use super::cheapest::cheapest_completion;
use super::constraints::Constraints;
use super::fix::minimal_drop;
use super::pricing::{Price, Pricing};
use super::search::{Core, find_model};
use super::states::{Judgement, judge};

/// An option of one configurator's catalog, by position. Only meaningful with the
/// configurator that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OptionId(usize);

impl OptionId {
    /// Position of the option in [`Catalog::options`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// A set of options, such as the customer's picks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection(Bits);

impl Selection {
    pub fn contains(&self, option: OptionId) -> bool {
        self.0.contains(option.0)
    }

    pub fn insert(&mut self, option: OptionId) {
        self.0.insert(option.0);
    }

    pub fn remove(&mut self, option: OptionId) {
        self.0.remove(option.0);
    }

    /// Members in catalog order.
    pub fn iter(&self) -> impl Iterator<Item = OptionId> + '_ {
        self.0.iter().map(OptionId)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<OptionId> for Selection {
    fn from_iter<I: IntoIterator<Item = OptionId>>(options: I) -> Self {
        Selection(options.into_iter().map(|option| option.0).collect())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("option {0:?} is not a model")]
    NotAModel(String),
}

/// Everything a configurator screen shows for a partial selection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub catalog_version: u32,
    /// Some valid configuration contains every pick.
    pub is_consistent: bool,
    /// The picks themselves are a complete, valid configuration.
    pub is_valid: bool,
    /// Why no valid configuration contains every pick, when none does.
    pub conflict: Option<Because>,
    /// Every option of the catalog, in catalog order.
    pub options: Vec<OptionReport>,
    /// The price of the picks as they are.
    pub price: Price,
    /// The cheapest valid configuration containing the picks, when they are consistent.
    pub cheapest: Option<Completion>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OptionReport {
    pub option: String,
    pub group: String,
    #[serde(flatten)]
    pub state: OptionState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OptionState {
    /// One of the picks.
    Selected,
    /// Picking it keeps (or, as a swap, makes) the selection consistent.
    Available,
    /// Every valid completion of the picks contains it.
    Required { because: Because },
    /// No valid configuration contains the picks with it (after a swap in its group).
    Unavailable { because: Because },
}

/// The picks, rules and group bounds behind a state or a conflict. For an option's state, the
/// option itself is not among the picks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Because {
    pub picks: Vec<String>,
    pub rules: Vec<RuleRef>,
    /// Groups whose minimum or maximum took part.
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub id: String,
    pub message: String,
}

/// A valid configuration and its price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    pub options: Vec<String>,
    pub price: Price,
    /// Whether no valid completion costs less. The search has a fixed effort budget so that a
    /// live screen stays fast; when it runs out first, this is the cheapest it found and false.
    pub is_cheapest: bool,
}

/// What to do about a conflicting pick (or an inconsistent selection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Fix {
    Change(Change),
    /// No valid configuration contains the pick, whatever else is given up.
    Impossible {
        because: Because,
    },
}

/// The least change that makes the selection consistent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Picks of the new pick's single-choice group that it replaces.
    pub replaced: Vec<String>,
    /// The fewest other picks to give up; empty when the pick fits as it is.
    pub dropped: Vec<String>,
    /// The picks after the change.
    pub selection: Vec<String>,
    /// Options every valid completion of the new selection contains, beyond it.
    pub forced: Vec<String>,
}

/// A catalog compiled for answering questions about selections. Build one per catalog version
/// and share it: every method takes `&self`.
pub struct Configurator {
    catalog: Catalog,
    option_index: HashMap<String, usize>,
    constraints: Constraints,
    pricing: Pricing,
}

impl Configurator {
    /// Validates and compiles a catalog.
    pub fn new(catalog: Catalog) -> Result<Self, InvalidCatalog> {
        catalog.validate()?;
        let option_index = catalog.options.iter().enumerate().map(|(index, option)| (option.code.clone(), index)).collect();
        let constraints = Constraints::compile(&catalog, &option_index);
        let pricing = Pricing::compile(&catalog, &option_index);
        Ok(Self { catalog, option_index, constraints, pricing })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn option_id(&self, code: &str) -> Option<OptionId> {
        self.option_index.get(code).copied().map(OptionId)
    }

    /// The catalog entry of an option issued by this configurator.
    pub fn option(&self, id: OptionId) -> Option<&CatalogOption> {
        self.catalog.options.get(id.0)
    }

    /// The selection of the options with these codes.
    pub fn selection<S: AsRef<str>>(&self, codes: &[S]) -> Result<Selection, SelectionError> {
        codes
            .iter()
            .map(|code| self.option_id(code.as_ref()).ok_or_else(|| SelectionError::UnknownOption(code.as_ref().to_owned())))
            .collect()
    }

    /// Codes of a selection's options, in catalog order.
    pub fn codes(&self, selection: &Selection) -> Vec<String> {
        self.codes_of(&self.own(selection))
    }

    /// Whether a selection is a complete, valid configuration.
    pub fn is_valid(&self, selection: &Selection) -> bool {
        self.constraints.is_satisfied_by(&self.own(selection))
    }

    /// The price of a selection, line by line.
    pub fn price(&self, selection: &Selection) -> Price {
        self.pricing.breakdown(&self.catalog, &self.own(selection))
    }

    /// The state of every option, the price and the cheapest completion for the picks.
    pub fn evaluate(&self, picks: &Selection) -> Evaluation {
        let picks = self.own(picks);
        let analysis = judge(&self.constraints, &picks);
        let options = analysis
            .judgements
            .iter()
            .enumerate()
            .map(|(var, judgement)| OptionReport {
                option: self.catalog.options[var].code.clone(),
                group: self.catalog.options[var].group.clone(),
                state: self.state(judgement, var),
            })
            .collect();
        let is_consistent = analysis.conflict.is_none();
        Evaluation {
            catalog_version: self.catalog.version,
            is_consistent,
            is_valid: is_consistent && self.constraints.is_satisfied_by(&picks),
            conflict: analysis.conflict.map(|core| self.because(&core, None)),
            options,
            price: self.pricing.breakdown(&self.catalog, &picks),
            cheapest: if is_consistent { self.cheapest_of(&picks) } else { None },
        }
    }

    /// A valid configuration containing the picks with the lowest total price, or `None` if
    /// the picks are inconsistent. Ties go to the first one the search meets, deterministically.
    /// On a large, tightly constrained catalog the search may run out of its effort budget
    /// first: then the result is the cheapest found, with `is_cheapest` false.
    pub fn cheapest_completion(&self, picks: &Selection) -> Option<Completion> {
        self.cheapest_of(&self.own(picks))
    }

    /// The least change that lets the option `pick` join the picks: it replaces the picks of
    /// its group if the group is single-choice, then the fewest other picks are dropped. Among
    /// equally small changes, the one dropping picks that come latest in the catalog (so the
    /// model and engine are kept longest). `Impossible` when no valid configuration contains
    /// `pick` at all. Drop sets are tried by size, skipping those that leave a known conflict
    /// intact, which is quick for the few picks a configuration has.
    pub fn fix(&self, picks: &Selection, pick: &str) -> Result<Fix, SelectionError> {
        let pick = self.option_index.get(pick).copied().ok_or_else(|| SelectionError::UnknownOption(pick.to_owned()))?;
        let mut selection = self.own(picks);
        let mut replaced = Bits::default();
        let group = &self.constraints.groups[self.constraints.group_of[pick]];
        if group.is_single {
            for &member in &group.vars {
                if member != pick && selection.contains(member) {
                    selection.remove(member);
                    replaced.insert(member);
                }
            }
        }
        selection.insert(pick);
        Ok(self.drop_to_consistency(selection, Some(pick), &replaced))
    }

    /// The fewest picks to give up so that the picks are consistent again (say, a saved
    /// configuration under a newer catalog version); same tie-break as [`Configurator::fix`].
    pub fn repair(&self, picks: &Selection) -> Fix {
        self.drop_to_consistency(self.own(picks), None, &Bits::default())
    }

    /// A starting configuration for `model`: the model, then each option marked as a default,
    /// in catalog order, if its single-choice group has no choice yet and the selection stays
    /// consistent with it.
    pub fn default_selection(&self, model: &str) -> Result<Selection, SelectionError> {
        let id = self.option_id(model).ok_or_else(|| SelectionError::UnknownOption(model.to_owned()))?;
        if self.catalog.options[id.0].group != MODEL_GROUP {
            return Err(SelectionError::NotAModel(model.to_owned()));
        }
        let mut selection: Bits = [id.0].into_iter().collect();
        for var in (0..self.catalog.options.len()).filter(|&var| self.catalog.options[var].is_default) {
            let group = &self.constraints.groups[self.constraints.group_of[var]];
            if group.is_single && group.vars.iter().any(|&member| selection.contains(member)) {
                continue;
            }
            let mut candidate = selection.clone();
            candidate.insert(var);
            if find_model(&self.constraints, &candidate).is_ok() {
                selection = candidate;
            }
        }
        Ok(Selection(selection))
    }

    /// The members of `selection` that are options of this catalog.
    fn own(&self, selection: &Selection) -> Bits {
        selection.0.iter().filter(|&var| var < self.catalog.options.len()).collect()
    }

    fn codes_of(&self, selection: &Bits) -> Vec<String> {
        selection.iter().map(|var| self.catalog.options[var].code.clone()).collect()
    }

    fn cheapest_of(&self, picks: &Bits) -> Option<Completion> {
        let cheapest = cheapest_completion(&self.constraints, &self.pricing, picks)?;
        Some(Completion {
            options: self.codes_of(&cheapest.selected),
            price: self.pricing.breakdown(&self.catalog, &cheapest.selected),
            is_cheapest: cheapest.is_proven,
        })
    }

    fn drop_to_consistency(&self, selection: Bits, keep: Option<usize>, replaced: &Bits) -> Fix {
        match minimal_drop(&self.constraints, &selection, keep) {
            Ok(dropped) => {
                let mut kept = selection;
                kept.difference_with(&dropped);
                let forced = judge(&self.constraints, &kept)
                    .judgements
                    .iter()
                    .enumerate()
                    .filter(|(_, judgement)| matches!(judgement, Judgement::Required(_)))
                    .map(|(var, _)| self.catalog.options[var].code.clone())
                    .collect();
                Fix::Change(Change {
                    replaced: self.codes_of(replaced),
                    dropped: self.codes_of(&dropped),
                    selection: self.codes_of(&kept),
                    forced,
                })
            }
            Err(core) => Fix::Impossible { because: self.because(&core, keep) },
        }
    }

    fn state(&self, judgement: &Judgement, var: usize) -> OptionState {
        match judgement {
            Judgement::Selected => OptionState::Selected,
            Judgement::Available => OptionState::Available,
            Judgement::Required(core) => OptionState::Required { because: self.because(core, Some(var)) },
            Judgement::Unavailable(core) => OptionState::Unavailable { because: self.because(core, Some(var)) },
        }
    }

    /// A core in catalog terms, leaving out the option it is about.
    fn because(&self, core: &Core, about: Option<usize>) -> Because {
        Because {
            picks: core.assumptions.iter().filter(|&var| Some(var) != about).map(|var| self.catalog.options[var].code.clone()).collect(),
            rules: core
                .rules
                .iter()
                .map(|rule| RuleRef { id: self.catalog.rules[rule].id.clone(), message: self.catalog.rules[rule].message.clone() })
                .collect(),
            groups: core.groups.iter().map(|group| self.catalog.groups[group].code.clone()).collect(),
        }
    }
}
