//! The catalog as an administrator writes it: models, option groups, options with prices, and
//! the rules between them, addressed by stable string codes. It is plain data (serde in and out);
//! [`Catalog::validate`] says everything that is wrong with one before the solver compiles it.
//! Nothing here decides whether a selection is valid: that is [`crate::domain::Configurator`].

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Code of the group whose options are the models. Every catalog has it, single-choice and
/// required, so every complete configuration names exactly one model; an option's price in this
/// group is the model's base price.
pub const MODEL_GROUP: &str = "model";

/// Largest absolute price or price delta accepted, in minor units (ten billion euros): far
/// beyond any car, small enough that no sum over a catalog can overflow an `i64`.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A versioned catalog. A saved configuration records the `version` it was priced with, so a
/// published version must never change meaning: publish a new version instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub version: u32,
    /// ISO 4217 code of every price in the catalog, e.g. `EUR`.
    pub currency: String,
    pub groups: Vec<Group>,
    /// Options in display order; the model group's options are the models.
    pub options: Vec<CatalogOption>,
    pub rules: Vec<Rule>,
}

/// A set of options the customer chooses from, such as `engine`, `color` or `features`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub code: String,
    pub name: String,
    pub choice: Choice,
}

/// How many options of a group a complete configuration holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Choice {
    /// At most one option; exactly one when `required`. Picking another option of the group
    /// replaces the current one, as in any configurator.
    Single { required: bool },
    /// Any number between `min` and `max` (no upper limit when `max` is absent).
    Multiple { min: u32, max: Option<u32> },
}

impl Choice {
    /// The inclusive bounds on how many of the group's `option_count` options are selected.
    pub fn bounds(self, option_count: usize) -> (u32, u32) {
        let count = u32::try_from(option_count).unwrap_or(u32::MAX);
        match self {
            Choice::Single { required } => (u32::from(required), 1),
            Choice::Multiple { min, max } => (min, max.unwrap_or(count)),
        }
    }

    pub fn is_single(self) -> bool {
        matches!(self, Choice::Single { .. })
    }
}

/// One thing a customer can pick: a model, an engine, a colour, a package, a feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogOption {
    pub code: String,
    pub name: String,
    /// Code of the group the option belongs to.
    pub group: String,
    /// List price in minor units; the base price for a model. Never negative.
    pub price: i64,
    /// Part of the suggested starting configuration (see
    /// [`crate::domain::Configurator::default_selection`]).
    #[serde(default)]
    pub is_default: bool,
}

/// A rule with a stable `id` (shown in explanations and kept across catalog versions) and the
/// sentence a customer reads when the rule blocks, forces or prices something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub message: String,
    #[serde(flatten)]
    pub kind: RuleKind,
}

/// What a rule says. Option and group references are codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    /// Selecting `if_selected` needs at least one of `then_any_of`. Limiting an option to some
    /// models is a `requires` whose list is those models.
    Requires { if_selected: String, then_any_of: Vec<String> },
    /// `a` and `b` are never selected together.
    Excludes { a: String, b: String },
    /// Selecting `package` selects every option in `includes`, and those options cost nothing
    /// while the package is selected (the package's own price covers them).
    Package { package: String, includes: Vec<String> },
    /// Selecting `if_selected` needs at least one option of `group`.
    MandatoryIf { if_selected: String, group: String },
    /// While every option of `when_all` is selected, `option` costs `delta` more (less when
    /// negative). Adjustments do not apply to an option a selected package includes, which is
    /// free. No combination of adjustments may take an option below zero.
    PriceAdjustment { option: String, when_all: Vec<String>, delta: i64 },
}

impl RuleKind {
    /// Every option code the rule mentions.
    pub fn option_codes(&self) -> Vec<&str> {
        match self {
            RuleKind::Requires { if_selected, then_any_of } => once_and(if_selected, then_any_of),
            RuleKind::Excludes { a, b } => vec![a, b],
            RuleKind::Package { package, includes } => once_and(package, includes),
            RuleKind::MandatoryIf { if_selected, .. } => vec![if_selected],
            RuleKind::PriceAdjustment { option, when_all, .. } => once_and(option, when_all),
        }
    }
}

fn once_and<'a>(first: &'a str, rest: &'a [String]) -> Vec<&'a str> {
    std::iter::once(first).chain(rest.iter().map(String::as_str)).collect()
}

/// One thing wrong with a catalog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogProblem {
    #[error("currency {0:?} is not a three-letter ISO 4217 code")]
    BadCurrency(String),
    #[error("a {0} has an empty code")]
    EmptyCode(&'static str),
    #[error("{kind} code {code:?} is used more than once")]
    Duplicate { kind: &'static str, code: String },
    #[error("there is no single-choice required group {MODEL_GROUP:?}")]
    NoModelGroup,
    #[error("group {0:?} has no options")]
    EmptyGroup(String),
    #[error("group {group:?} asks for between {min} and {max} of its {options} options")]
    BadBounds { group: String, min: u32, max: u32, options: usize },
    #[error("option {option:?} belongs to unknown group {group:?}")]
    UnknownGroup { option: String, group: String },
    #[error("option {option:?} has a price of {price}, outside 0..={MAX_AMOUNT}")]
    BadPrice { option: String, price: i64 },
    #[error("rule {rule:?} refers to unknown option {option:?}")]
    UnknownOption { rule: String, option: String },
    #[error("rule {rule:?} refers to unknown group {group:?}")]
    UnknownRuleGroup { rule: String, group: String },
    #[error("rule {rule:?} {reason}")]
    PointlessRule { rule: String, reason: &'static str },
    #[error("rule {rule:?} has a delta of {delta}, outside ±{MAX_AMOUNT}")]
    BadDelta { rule: String, delta: i64 },
    #[error("price adjustments can take option {option:?} down to {lowest}, below zero")]
    PriceBelowZero { option: String, lowest: i64 },
}

/// Everything wrong with a catalog, in catalog order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidCatalog {
    pub problems: Vec<CatalogProblem>,
}

impl fmt::Display for InvalidCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid catalog")?;
        for (index, problem) in self.problems.iter().enumerate() {
            write!(f, "{} {problem}", if index == 0 { ":" } else { ";" })?;
        }
        Ok(())
    }
}

impl Catalog {
    /// Checks that every reference resolves, codes are unique, bounds and prices make sense and
    /// no rule is empty or self-contradictory. It does not check that valid configurations
    /// exist: evaluate the empty selection for that.
    pub fn validate(&self) -> Result<(), InvalidCatalog> {
        let mut problems = Vec::new();
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.push(CatalogProblem::BadCurrency(self.currency.clone()));
        }
        let groups = unique_codes("group", self.groups.iter().map(|g| g.code.as_str()), &mut problems);
        let options = unique_codes("option", self.options.iter().map(|o| o.code.as_str()), &mut problems);
        unique_codes("rule", self.rules.iter().map(|r| r.id.as_str()), &mut problems);
        self.check_groups(&mut problems);
        self.check_options(&groups, &mut problems);
        for rule in &self.rules {
            check_rule(rule, &options, &groups, &mut problems);
        }
        self.check_adjusted_prices(&mut problems);
        if problems.is_empty() { Ok(()) } else { Err(InvalidCatalog { problems }) }
    }

    fn check_groups(&self, problems: &mut Vec<CatalogProblem>) {
        let model = self.groups.iter().find(|g| g.code == MODEL_GROUP);
        if !model.is_some_and(|g| g.choice == Choice::Single { required: true }) {
            problems.push(CatalogProblem::NoModelGroup);
        }
        for group in &self.groups {
            let options = self.options.iter().filter(|o| o.group == group.code).count();
            let (min, max) = group.choice.bounds(options);
            if options == 0 {
                problems.push(CatalogProblem::EmptyGroup(group.code.clone()));
            } else if max == 0 || min > max || min as usize > options {
                problems.push(CatalogProblem::BadBounds { group: group.code.clone(), min, max, options });
            }
        }
    }

    fn check_options(&self, groups: &HashSet<&str>, problems: &mut Vec<CatalogProblem>) {
        for option in &self.options {
            if !groups.contains(option.group.as_str()) {
                problems.push(CatalogProblem::UnknownGroup { option: option.code.clone(), group: option.group.clone() });
            }
            if !(0..=MAX_AMOUNT).contains(&option.price) {
                problems.push(CatalogProblem::BadPrice { option: option.code.clone(), price: option.price });
            }
        }
    }

    /// Every line of a price breakdown is at least zero, whatever else is selected: the
    /// cheapest-completion search relies on it for its lower bound, and a negative line would
    /// read as a refund.
    fn check_adjusted_prices(&self, problems: &mut Vec<CatalogProblem>) {
        for option in &self.options {
            let discounts: i64 = self
                .rules
                .iter()
                .filter_map(|rule| match &rule.kind {
                    RuleKind::PriceAdjustment { option: adjusted, delta, .. } if *adjusted == option.code => Some((*delta).min(0)),
                    _ => None,
                })
                .sum();
            let lowest = option.price.saturating_add(discounts);
            if lowest < 0 {
                problems.push(CatalogProblem::PriceBelowZero { option: option.code.clone(), lowest });
            }
        }
    }
}

fn unique_codes<'a>(kind: &'static str, codes: impl Iterator<Item = &'a str>, problems: &mut Vec<CatalogProblem>) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for code in codes {
        if code.is_empty() {
            problems.push(CatalogProblem::EmptyCode(kind));
        } else if !seen.insert(code) {
            problems.push(CatalogProblem::Duplicate { kind, code: code.to_owned() });
        }
    }
    seen
}

fn check_rule(rule: &Rule, options: &HashSet<&str>, groups: &HashSet<&str>, problems: &mut Vec<CatalogProblem>) {
    for code in rule.kind.option_codes() {
        if !options.contains(code) {
            problems.push(CatalogProblem::UnknownOption { rule: rule.id.clone(), option: code.to_owned() });
        }
    }
    let pointless = |reason| CatalogProblem::PointlessRule { rule: rule.id.clone(), reason };
    match &rule.kind {
        RuleKind::Requires { then_any_of, .. } if then_any_of.is_empty() => problems.push(pointless("requires an empty list")),
        RuleKind::Excludes { a, b } if a == b => problems.push(pointless("makes an option exclude itself")),
        RuleKind::Package { includes, .. } if includes.is_empty() => problems.push(pointless("is a package that includes nothing")),
        RuleKind::Package { package, includes } if includes.contains(package) => {
            problems.push(pointless("is a package that includes itself"))
        }
        RuleKind::MandatoryIf { group, .. } if !groups.contains(group.as_str()) => {
            problems.push(CatalogProblem::UnknownRuleGroup { rule: rule.id.clone(), group: group.clone() })
        }
        RuleKind::PriceAdjustment { when_all, .. } if when_all.is_empty() => problems.push(pointless("adjusts a price under no condition")),
        RuleKind::PriceAdjustment { delta, .. } if !(-MAX_AMOUNT..=MAX_AMOUNT).contains(delta) => {
            problems.push(CatalogProblem::BadDelta { rule: rule.id.clone(), delta: *delta })
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn small() -> Catalog {
        serde_json::from_value(json!({
            "version": 3,
            "currency": "EUR",
            "groups": [
                {"code": "model", "name": "Model", "choice": {"single": {"required": true}}},
                {"code": "features", "name": "Features", "choice": {"multiple": {"min": 0, "max": null}}}
            ],
            "options": [
                {"code": "aurora", "name": "Aurora", "group": "model", "price": 3_000_000},
                {"code": "sunroof", "name": "Sunroof", "group": "features", "price": 90_000, "is_default": true}
            ],
            "rules": [
                {"id": "r1", "message": "Sunroof only on the Aurora", "kind": "requires", "if_selected": "sunroof", "then_any_of": ["aurora"]}
            ]
        }))
        .expect("a valid catalog document")
    }

    #[test]
    fn a_well_formed_catalog_passes_and_round_trips_through_json() {
        let catalog = small();
        assert_eq!(catalog.validate(), Ok(()));
        let json = serde_json::to_value(&catalog).expect("serializable");
        assert_eq!(json["rules"][0]["kind"], "requires");
        assert_eq!(serde_json::from_value::<Catalog>(json).expect("round trip"), catalog);
    }

    #[test]
    fn unknown_fields_are_rejected_in_rules_too() {
        let mut json = serde_json::to_value(small()).expect("serializable");
        json["rules"][0]["then_all_of"] = json!(["aurora"]);
        assert!(serde_json::from_value::<Catalog>(json).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_code() {
        let mut catalog = small();
        catalog.currency = "euro".into();
        catalog.groups[0].choice = Choice::Single { required: false };
        catalog.options.push(CatalogOption {
            code: "sunroof".into(),
            name: "Again".into(),
            group: "roof".into(),
            price: -5,
            is_default: false,
        });
        catalog.rules.push(Rule {
            id: "r2".into(),
            message: "m".into(),
            kind: RuleKind::Excludes { a: "sunroof".into(), b: "sunroof".into() },
        });
        catalog.rules.push(Rule {
            id: "r1".into(),
            message: "m".into(),
            kind: RuleKind::PriceAdjustment { option: "sunroof".into(), when_all: vec!["nope".into()], delta: -100_000 },
        });
        let problems = catalog.validate().expect_err("invalid").problems;
        let expected = [
            CatalogProblem::BadCurrency("euro".into()),
            CatalogProblem::Duplicate { kind: "option", code: "sunroof".into() },
            CatalogProblem::Duplicate { kind: "rule", code: "r1".into() },
            CatalogProblem::NoModelGroup,
            CatalogProblem::UnknownGroup { option: "sunroof".into(), group: "roof".into() },
            CatalogProblem::BadPrice { option: "sunroof".into(), price: -5 },
            CatalogProblem::PointlessRule { rule: "r2".into(), reason: "makes an option exclude itself" },
            CatalogProblem::UnknownOption { rule: "r1".into(), option: "nope".into() },
            CatalogProblem::PriceBelowZero { option: "sunroof".into(), lowest: -10_000 },
            CatalogProblem::PriceBelowZero { option: "sunroof".into(), lowest: -100_005 },
        ];
        assert_eq!(problems, expected);
        let message = InvalidCatalog { problems }.to_string();
        assert!(message.starts_with("invalid catalog: currency \"euro\""), "{message}");
    }

    #[test]
    fn group_bounds_must_be_reachable() {
        let mut catalog = small();
        catalog.groups[1].choice = Choice::Multiple { min: 2, max: Some(1) };
        assert_eq!(
            catalog.validate().expect_err("invalid").problems,
            vec![CatalogProblem::BadBounds { group: "features".into(), min: 2, max: 1, options: 1 }]
        );
    }
}
