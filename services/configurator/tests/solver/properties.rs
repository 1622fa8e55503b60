//! The solver agrees with brute force on random small catalogs and selections.

use motorpool_configurator::domain::{Because, Catalog, Configurator, Fix, LineKind, OptionState, Selection};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::brute_force::{BruteForce, Expected, Mask};
use crate::small_catalogs::{catalog, picks};

const CASES: u32 = 500;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, ..ProptestConfig::default() }
}

struct Case {
    catalog: Catalog,
    configurator: Configurator,
    picks: Mask,
}

impl Case {
    fn new(catalog: Catalog, chosen: &[bool]) -> Self {
        let configurator = Configurator::new(catalog.clone()).expect("a valid catalog");
        let picks = chosen.iter().take(catalog.options.len()).enumerate().filter(|&(_, &on)| on).map(|(i, _)| 1 << i).sum();
        Self { catalog, configurator, picks }
    }

    fn selection(&self, mask: Mask) -> Selection {
        let codes: Vec<&str> =
            self.catalog.options.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, o)| o.code.as_str()).collect();
        self.configurator.selection(&codes).expect("catalog codes")
    }

    fn mask(&self, codes: &[String]) -> Mask {
        codes.iter().map(|code| 1 << self.catalog.options.iter().position(|o| o.code == *code).expect("a catalog code")).sum()
    }
}

fn ids(because: &Because) -> (Vec<&str>, Vec<&str>) {
    (because.rules.iter().map(|r| r.id.as_str()).collect(), because.groups.iter().map(String::as_str).collect())
}

#[test]
fn consistency_and_validity_match_brute_force() {
    proptest!(config(), |(catalog in catalog(), chosen in picks())| {
        let case = Case::new(catalog, &chosen);
        let brute = BruteForce::new(&case.catalog);
        let evaluation = case.configurator.evaluate(&case.selection(case.picks));
        prop_assert_eq!(evaluation.is_consistent, brute.is_consistent(case.picks));
        prop_assert_eq!(evaluation.is_valid, brute.is_valid(case.picks));
        prop_assert_eq!(case.configurator.is_valid(&case.selection(case.picks)), brute.is_valid(case.picks));
        if let Some(conflict) = &evaluation.conflict {
            // The reason is enough: its picks under its rules and group bounds have no completion.
            let (rules, groups) = ids(conflict);
            let core = case.mask(&conflict.picks);
            prop_assert!((0..1u32 << case.catalog.options.len())
                .all(|s| s & core != core || !brute.is_valid_under(s, Some(&rules), Some(&groups))));
        }
    });
}

#[test]
fn every_option_state_matches_brute_force_with_a_sufficient_reason() {
    proptest!(config(), |(catalog in catalog(), chosen in picks())| {
        let case = Case::new(catalog, &chosen);
        let brute = BruteForce::new(&case.catalog);
        let evaluation = case.configurator.evaluate(&case.selection(case.picks));
        let all = 1u32 << case.catalog.options.len();
        for (option, report) in evaluation.options.iter().enumerate() {
            let bit = 1 << option;
            let expected = brute.state(case.picks, option);
            match &report.state {
                OptionState::Selected => prop_assert_eq!(expected, Expected::Selected, "{}", report.option),
                OptionState::Available => prop_assert_eq!(expected, Expected::Available, "{}", report.option),
                OptionState::Required { because } => {
                    prop_assert_eq!(expected, Expected::Required, "{}", report.option);
                    let (rules, groups) = ids(because);
                    let core = case.mask(&because.picks);
                    prop_assert!(core & !case.picks == 0);
                    prop_assert!((0..all).all(|s| s & core != core || s & bit != 0 || !brute.is_valid_under(s, Some(&rules), Some(&groups))),
                        "{} not forced by {:?}", report.option, because);
                }
                OptionState::Unavailable { because } => {
                    prop_assert_eq!(expected, Expected::Unavailable, "{}", report.option);
                    let (rules, groups) = ids(because);
                    let core = case.mask(&because.picks) | bit;
                    prop_assert!(case.mask(&because.picks) & !brute.with_pick(case.picks, option) == 0);
                    prop_assert!((0..all).all(|s| s & core != core || !brute.is_valid_under(s, Some(&rules), Some(&groups))),
                        "{} not blocked by {:?}", report.option, because);
                }
            }
        }
    });
}

#[test]
fn the_minimal_fix_matches_brute_force() {
    proptest!(config(), |(catalog in catalog(), chosen in picks(), pick in any::<Index>())| {
        let case = Case::new(catalog, &chosen);
        let brute = BruteForce::new(&case.catalog);
        let option = pick.index(case.catalog.options.len());
        let code = case.catalog.options[option].code.clone();
        let fixed = case.configurator.fix(&case.selection(case.picks), &code).expect("a catalog code");
        let selection = brute.with_pick(case.picks, option);
        match (fixed, brute.minimal_drop(selection, 1 << option)) {
            (Fix::Change(change), Some(dropped)) => {
                prop_assert_eq!(case.mask(&change.dropped), dropped);
                prop_assert_eq!(case.mask(&change.replaced), case.picks & !selection);
                let result = selection & !dropped;
                prop_assert_eq!(case.mask(&change.selection), result);
                prop_assert!(brute.is_consistent(result));
                prop_assert_eq!(case.mask(&change.forced), brute.required(result));
            }
            (Fix::Impossible { .. }, None) => {}
            (fixed, expected) => prop_assert!(false, "solver {:?}, brute force {:?}", fixed, expected),
        }
        let repaired = case.configurator.repair(&case.selection(case.picks));
        match (repaired, brute.minimal_drop(case.picks, 0)) {
            (Fix::Change(change), Some(dropped)) => prop_assert_eq!(case.mask(&change.dropped), dropped),
            (Fix::Impossible { .. }, None) => {}
            (repaired, expected) => prop_assert!(false, "solver {:?}, brute force {:?}", repaired, expected),
        }
    });
}

#[test]
fn the_cheapest_completion_matches_brute_force() {
    proptest!(config(), |(catalog in catalog(), chosen in picks())| {
        let case = Case::new(catalog, &chosen);
        let brute = BruteForce::new(&case.catalog);
        let completion = case.configurator.cheapest_completion(&case.selection(case.picks));
        prop_assert_eq!(completion.as_ref().map(|c| c.price.total), brute.cheapest(case.picks));
        if let Some(completion) = completion {
            prop_assert!(completion.is_cheapest);
            let mask = case.mask(&completion.options);
            prop_assert!(brute.is_valid(mask));
            prop_assert_eq!(mask & case.picks, case.picks);
            prop_assert_eq!(brute.price(mask), completion.price.total);
            prop_assert_eq!(completion.price.lines.iter().map(|line| line.amount).sum::<i64>(), completion.price.total);
        }
    });
}

#[test]
fn prices_match_brute_force() {
    proptest!(config(), |(catalog in catalog(), chosen in picks())| {
        let case = Case::new(catalog, &chosen);
        let brute = BruteForce::new(&case.catalog);
        let price = case.configurator.price(&case.selection(case.picks));
        prop_assert_eq!(price.total, brute.price(case.picks));
        prop_assert_eq!(price.lines.iter().map(|line| line.amount).sum::<i64>(), price.total);
        let negative_only_as_discounts = price.lines.iter().all(|line| line.amount >= 0 || matches!(line.kind, LineKind::Adjustment { .. }));
        prop_assert!(negative_only_as_discounts);
    });
}
