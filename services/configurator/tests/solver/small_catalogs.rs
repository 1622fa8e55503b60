//! Proptest strategies for random small catalogs (at most [`MAX_OPTIONS`] options, so brute
//! force can enumerate every selection) and for selections of them.

use motorpool_configurator::domain::{Catalog, CatalogOption, Choice, Group, MODEL_GROUP, Rule, RuleKind};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

pub const MAX_OPTIONS: usize = 12;

/// A rule before its indices are resolved against the catalog drawn with it.
#[derive(Clone, Debug)]
struct RawRule {
    kind: u8,
    a: Index,
    b: Index,
    list: Vec<Index>,
    group: Index,
    delta: i64,
}

fn raw_rule() -> impl Strategy<Value = RawRule> {
    (0u8..5, any::<Index>(), any::<Index>(), vec(any::<Index>(), 1..=3), any::<Index>(), -300i64..=300)
        .prop_map(|(kind, a, b, list, group, delta)| RawRule { kind, a, b, list, group, delta })
}

/// `(size, shape, min, max)` of a group after the model group.
type RawGroup = (usize, u8, u32, u32);

/// A valid catalog: 1–3 models, 1–5 more groups of every kind, prices with ties, and up to 14
/// rules of every kind.
pub fn catalog() -> impl Strategy<Value = Catalog> {
    (1usize..=3, vec((1usize..=4, 0u8..4, 0u32..=2, 1u32..=3), 1..=5), vec(0i64..=5, MAX_OPTIONS), vec(raw_rule(), 0..=14))
        .prop_map(|(models, groups, prices, rules)| build(models, &groups, &prices, &rules))
}

/// Picks: each option with probability one in four.
pub fn picks() -> impl Strategy<Value = Vec<bool>> {
    vec(prop::bool::weighted(0.25), MAX_OPTIONS)
}

fn build(models: usize, raw_groups: &[RawGroup], prices: &[i64], raw_rules: &[RawRule]) -> Catalog {
    let mut groups = vec![Group { code: MODEL_GROUP.into(), name: "Model".into(), choice: Choice::Single { required: true } }];
    let mut options: Vec<CatalogOption> = (0..models).map(|m| option(format!("m{m}"), MODEL_GROUP, prices[m] * 1_000)).collect();
    for (g, &(size, shape, min, max)) in raw_groups.iter().enumerate() {
        let size = size.min(MAX_OPTIONS - options.len());
        if size == 0 {
            break;
        }
        let code = format!("g{g}");
        let size_u32 = size as u32;
        let choice = match shape {
            0 => Choice::Single { required: true },
            1 => Choice::Single { required: false },
            2 => Choice::Multiple { min: min.min(size_u32), max: None },
            _ => Choice::Multiple { min: min.min(size_u32), max: Some(max.max(min).min(size_u32)) },
        };
        for i in 0..size {
            let price = prices[options.len()] * 100;
            options.push(option(format!("{code}o{i}"), &code, price));
        }
        groups.push(Group { code, name: format!("Group {g}"), choice });
    }
    let mut catalog = Catalog { version: 1, currency: "EUR".into(), groups, options, rules: Vec::new() };
    for (index, raw) in raw_rules.iter().enumerate() {
        if let Some(kind) = resolve(&catalog, raw) {
            catalog.rules.push(Rule { id: format!("r{index}"), message: format!("rule {index}"), kind });
        }
    }
    catalog
}

fn option(code: String, group: &str, price: i64) -> CatalogOption {
    CatalogOption { name: code.to_uppercase(), code, group: group.into(), price, is_default: false }
}

fn resolve(catalog: &Catalog, raw: &RawRule) -> Option<RuleKind> {
    let n = catalog.options.len();
    let code = |index: &Index| catalog.options[index.index(n)].code.clone();
    let (a, b) = (code(&raw.a), code(&raw.b));
    let mut list: Vec<String> = raw.list.iter().map(code).filter(|c| *c != a).collect();
    list.dedup();
    match raw.kind {
        0 if !list.is_empty() => Some(RuleKind::Requires { if_selected: a, then_any_of: list }),
        1 if a != b => Some(RuleKind::Excludes { a, b }),
        2 if !list.is_empty() => Some(RuleKind::Package { package: a, includes: list }),
        3 => Some(RuleKind::MandatoryIf { if_selected: a, group: catalog.groups[raw.group.index(catalog.groups.len())].code.clone() }),
        4 => {
            // Keep every option's lowest possible price at zero or more.
            let price = catalog.options[raw.a.index(n)].price;
            let discounts: i64 = catalog
                .rules
                .iter()
                .filter_map(|rule| match &rule.kind {
                    RuleKind::PriceAdjustment { option, delta, .. } if *option == a => Some((*delta).min(0)),
                    _ => None,
                })
                .sum();
            let delta = raw.delta.max(-(price + discounts));
            let when_all = if list.is_empty() { vec![b] } else { list };
            Some(RuleKind::PriceAdjustment { option: a, when_all, delta })
        }
        _ => None,
    }
}

#[test]
fn generated_catalogs_are_valid() {
    proptest!(|(catalog in catalog())| {
        prop_assert_eq!(catalog.validate(), Ok(()));
        prop_assert!(catalog.options.len() <= MAX_OPTIONS);
    });
}
