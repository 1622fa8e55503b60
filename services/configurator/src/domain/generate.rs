//! A deterministic generator of large, realistic catalogs, for benchmarks and stress tests.
//!
//! The catalog has a model group, then groups shaped like a real configurator's (required single
//! choices such as engine and colour, each with a standard option at no extra cost; optional
//! ones; multiple-choice feature groups, some bounded; package groups), and rules of every kind.
//! Valid configurations are guaranteed: hidden *witness* configurations are drawn first (per
//! model, its standard configuration and a few random ones), and a rule is kept only if every
//! witness satisfies it, so every model can be bought at its base price with standard equipment,
//! as in a real catalog. Everything comes from one seeded generator, so a spec always yields the
//! same catalog.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::bits::Bits;
use super::catalog::{Catalog, CatalogOption, Choice, Group, MODEL_GROUP, Rule, RuleKind};

/// The size of a generated catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub models: usize,
    /// Groups, the model group included.
    pub groups: usize,
    /// Options, the models included.
    pub options: usize,
    pub rules: usize,
    pub seed: u64,
}

impl Default for Spec {
    /// The benchmark's catalog: 4 models, 30 groups, 300 options, 1,000 rules.
    fn default() -> Self {
        Self { models: 4, groups: 30, options: 300, rules: 1_000, seed: 2024 }
    }
}

/// Random witness configurations drawn per model, besides its standard one.
const RANDOM_WITNESSES_PER_MODEL: usize = 2;

/// Draws a catalog of the given size. Needs at least two groups and more options than
/// models; it passes [`Catalog::validate`].
pub fn catalog(spec: &Spec) -> Catalog {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let (groups, options) = layout(spec, &mut rng);
    let shape = Shape::new(&groups, &options);
    let mut witnesses = Vec::new();
    for model in 0..spec.models {
        witnesses.push(shape.standard(model));
        for _ in 0..RANDOM_WITNESSES_PER_MODEL {
            witnesses.push(shape.witness(model, &mut rng));
        }
    }
    let mut maker = RuleMaker { shape: &shape, witnesses: &witnesses, rng, discounts: vec![0; options.len()], prices: &options };
    let rules = (0..spec.rules).map(|index| maker.rule(index)).collect();
    Catalog { version: 1, currency: "EUR".into(), groups, options, rules }
}

/// What a group after the model group is for, by its position.
fn choice_of(group: usize, rng: &mut StdRng) -> Choice {
    match group % 5 {
        0 | 1 => Choice::Single { required: true },
        2 => Choice::Single { required: false },
        3 => Choice::Multiple { min: 0, max: None },
        _ => Choice::Multiple { min: 0, max: Some(rng.random_range(2..=4)) },
    }
}

/// Every other unbounded multiple-choice group holds packages.
fn is_package_group(group: usize) -> bool {
    group % 10 == 3
}

/// Groups and options: the model group first, then the others with sizes around the average.
fn layout(spec: &Spec, rng: &mut StdRng) -> (Vec<Group>, Vec<CatalogOption>) {
    let others = spec.groups.saturating_sub(1).max(1);
    let spare = spec.options.saturating_sub(spec.models).max(others);
    let mut sizes = vec![spare / others; others];
    for size in sizes.iter_mut().take(spare % others) {
        *size += 1;
    }
    for _ in 0..2 * others {
        let (from, to) = (rng.random_range(0..others), rng.random_range(0..others));
        if sizes[from] > 3 {
            sizes[from] -= 1;
            sizes[to] += 1;
        }
    }
    let mut groups = vec![Group { code: MODEL_GROUP.into(), name: "Model".into(), choice: Choice::Single { required: true } }];
    let mut options: Vec<CatalogOption> = (0..spec.models)
        .map(|m| option(format!("model-{m}"), format!("Model {m}"), MODEL_GROUP, rng.random_range(50..120) * 50_000, false))
        .collect();
    for (g, &size) in sizes.iter().enumerate() {
        let code = if is_package_group(g) { format!("p{g:02}") } else { format!("g{g:02}") };
        let choice = choice_of(g, rng);
        let required = choice == Choice::Single { required: true };
        for i in 0..size {
            // The first option of a required group is the standard one, at no extra cost.
            let price = if i == 0 && required { 0 } else { rng.random_range(1..=600) * 500 };
            options.push(option(format!("{code}-{i:02}"), format!("Option {i} of group {g}"), &code, price, i == 0 && required));
        }
        groups.push(Group { code: code.clone(), name: format!("Group {g}"), choice });
    }
    (groups, options)
}

fn option(code: String, name: String, group: &str, price: i64, is_default: bool) -> CatalogOption {
    CatalogOption { code, name, group: group.into(), price, is_default }
}

/// Options by group, as indices.
struct Shape {
    members: Vec<Vec<usize>>,
    choices: Vec<Choice>,
    group_of: Vec<usize>,
    codes: Vec<String>,
    group_codes: Vec<String>,
    packages: Vec<usize>,
}

impl Shape {
    fn new(groups: &[Group], options: &[CatalogOption]) -> Self {
        let group_of: Vec<usize> = options.iter().map(|o| groups.iter().position(|g| g.code == o.group).unwrap_or_default()).collect();
        let members = (0..groups.len()).map(|g| (0..options.len()).filter(|&o| group_of[o] == g).collect()).collect();
        let packages = (0..options.len()).filter(|&o| group_of[o] > 0 && is_package_group(group_of[o] - 1)).collect();
        Self {
            members,
            choices: groups.iter().map(|g| g.choice).collect(),
            group_of,
            codes: options.iter().map(|o| o.code.clone()).collect(),
            group_codes: groups.iter().map(|g| g.code.clone()).collect(),
            packages,
        }
    }

    /// The model with the standard option of every required group and nothing else.
    fn standard(&self, model: usize) -> Bits {
        let mut selected: Bits = [model].into_iter().collect();
        for (members, choice) in self.members.iter().zip(&self.choices).skip(1) {
            if *choice == (Choice::Single { required: true }) {
                selected.insert(members[0]);
            }
        }
        selected
    }

    /// A configuration for `model` that meets every group bound (rules come later).
    fn witness(&self, model: usize, rng: &mut StdRng) -> Bits {
        let mut selected: Bits = [model].into_iter().collect();
        for (members, choice) in self.members.iter().zip(&self.choices).skip(1) {
            let count = match *choice {
                Choice::Single { required } => usize::from(required || rng.random_bool(0.5)),
                Choice::Multiple { min, max } => rng.random_range(min as usize..=max.map_or(3, |max| max.min(3)) as usize),
            };
            for &option in members.choose_multiple(rng, count) {
                selected.insert(option);
            }
        }
        selected
    }

    fn is_model(&self, option: usize) -> bool {
        self.group_of[option] == 0
    }
}

struct RuleMaker<'a> {
    shape: &'a Shape,
    witnesses: &'a [Bits],
    rng: StdRng,
    /// Discounts given per option so far, so that no price can go below zero.
    discounts: Vec<i64>,
    prices: &'a [CatalogOption],
}

impl<'a> RuleMaker<'a> {
    /// Rule number `index`: draws until a rule every witness satisfies comes up.
    fn rule(&mut self, index: usize) -> Rule {
        loop {
            let draw = self.rng.random_range(0..100);
            let kind = match draw {
                0..25 => self.model_limit(),
                25..55 => self.excludes(),
                55..70 => self.requires(),
                70..77 => self.package(),
                77..82 => self.mandatory_if(),
                _ => Some(self.adjustment()),
            };
            if let Some(kind) = kind {
                return Rule { id: format!("r{index:04}"), message: format!("Generated rule {index}"), kind };
            }
        }
    }

    fn any_option(&mut self) -> usize {
        self.rng.random_range(self.shape.members[0].len()..self.shape.codes.len())
    }

    fn witnesses_with(&self, option: usize) -> impl Iterator<Item = &'a Bits> + use<'a> {
        self.witnesses.iter().filter(move |witness| witness.contains(option))
    }

    fn code(&self, option: usize) -> String {
        self.shape.codes[option].clone()
    }

    /// An option offered on some models only: a superset of the models its witnesses use.
    fn model_limit(&mut self) -> Option<RuleKind> {
        let option = self.any_option();
        let models = &self.shape.members[0];
        let allowed: Vec<usize> =
            models.iter().copied().filter(|&m| self.witnesses_with(option).any(|w| w.contains(m)) || self.rng.random_bool(0.3)).collect();
        (!allowed.is_empty() && allowed.len() < models.len())
            .then(|| RuleKind::Requires { if_selected: self.code(option), then_any_of: allowed.iter().map(|&m| self.code(m)).collect() })
    }

    fn excludes(&mut self) -> Option<RuleKind> {
        let (a, b) = (self.any_option(), self.any_option());
        let clash = self.shape.group_of[a] == self.shape.group_of[b] || self.witnesses_with(a).any(|w| w.contains(b));
        (!clash).then(|| RuleKind::Excludes { a: self.code(a), b: self.code(b) })
    }

    /// An option that needs one of a few others: one from each witness that holds it, plus
    /// a random extra.
    fn requires(&mut self) -> Option<RuleKind> {
        let option = self.any_option();
        let mut then: Vec<usize> = Vec::new();
        let holders: Vec<&Bits> = self.witnesses_with(option).collect();
        for witness in holders {
            if !then.iter().any(|&t| witness.contains(t)) {
                let choices: Vec<usize> = witness.iter().filter(|&o| o != option && !self.shape.is_model(o)).collect();
                then.push(*choices.choose(&mut self.rng)?);
            }
        }
        if then.is_empty() || self.rng.random_bool(0.5) {
            then.push(self.any_option());
        }
        then.retain(|&t| t != option);
        then.sort_unstable();
        then.dedup();
        (!then.is_empty() && then.len() <= 4)
            .then(|| RuleKind::Requires { if_selected: self.code(option), then_any_of: then.iter().map(|&t| self.code(t)).collect() })
    }

    /// A package including options every witness with it already has.
    fn package(&mut self) -> Option<RuleKind> {
        let package = *self.shape.packages.choose(&mut self.rng)?;
        let mut common: Option<Bits> = None;
        for witness in self.witnesses_with(package) {
            common.get_or_insert_with(|| witness.clone()).intersect_with(witness);
        }
        let candidates: Vec<usize> = match common {
            Some(common) => common.iter().filter(|&o| o != package && !self.shape.is_model(o)).collect(),
            None => (0..3).map(|_| self.any_option()).filter(|&o| o != package).collect(),
        };
        let count = self.rng.random_range(1..=3).min(candidates.len());
        let includes: Vec<String> = candidates.choose_multiple(&mut self.rng, count).map(|&o| self.code(o)).collect();
        (!includes.is_empty()).then(|| RuleKind::Package { package: self.code(package), includes })
    }

    /// An option that needs something from an optional group its witnesses all use.
    fn mandatory_if(&mut self) -> Option<RuleKind> {
        let option = self.any_option();
        let group = self.rng.random_range(1..self.shape.members.len());
        let optional = self.shape.choices[group] != Choice::Single { required: true };
        let met = self.witnesses_with(option).all(|w| self.shape.members[group].iter().any(|&o| w.contains(o)));
        (optional && met && self.shape.group_of[option] != group)
            .then(|| RuleKind::MandatoryIf { if_selected: self.code(option), group: self.shape.group_codes[group].clone() })
    }

    /// A surcharge, or a discount no larger than what is left of the option's price.
    fn adjustment(&mut self) -> RuleKind {
        let option = self.any_option();
        let conditions = self.rng.random_range(1..=2);
        let mut when_all: Vec<usize> = (0..conditions).map(|_| self.any_option()).filter(|&o| o != option).collect();
        if when_all.is_empty() {
            when_all.push(self.shape.members[0][0]);
        }
        let when_all = when_all.into_iter().map(|o| self.code(o)).collect();
        let room = self.prices[option].price - self.discounts[option];
        let delta = if room >= 1_000 && self.rng.random_bool(0.3) {
            -(self.rng.random_range(1..=room / 4 / 500 + 1) * 500).min(room)
        } else {
            self.rng.random_range(1..=100) * 500
        };
        if delta < 0 {
            self.discounts[option] -= delta;
        }
        RuleKind::PriceAdjustment { option: self.code(option), when_all, delta }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_catalog_is_valid_sized_and_deterministic() {
        let spec = Spec::default();
        let catalog = catalog(&spec);
        assert_eq!(catalog.validate(), Ok(()));
        assert_eq!((catalog.groups.len(), catalog.options.len(), catalog.rules.len()), (30, 300, 1_000));
        assert_eq!(catalog, super::catalog(&spec));
        assert_ne!(catalog, super::catalog(&Spec { seed: 1, ..spec }));
    }
}
