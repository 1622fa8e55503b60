//! The demo catalog behaves as a customer expects.

use motorpool_configurator::domain::{Because, Configurator, Evaluation, Fix, LineKind, OptionState, Selection, demo};

fn configurator() -> Configurator {
    Configurator::new(demo::catalog()).expect("the demo catalog is valid")
}

fn picks(configurator: &Configurator, codes: &[&str]) -> Selection {
    configurator.selection(codes).expect("demo codes")
}

fn state<'a>(evaluation: &'a Evaluation, option: &str) -> &'a OptionState {
    &evaluation.options.iter().find(|report| report.option == option).expect("a demo option").state
}

fn rule_ids(because: &Because) -> Vec<&str> {
    because.rules.iter().map(|rule| rule.id.as_str()).collect()
}

#[test]
fn every_model_has_valid_configurations_and_nothing_is_dead() {
    let configurator = configurator();
    let evaluation = configurator.evaluate(&Selection::default());
    assert!(evaluation.is_consistent && !evaluation.is_valid);
    for report in &evaluation.options {
        assert_eq!(report.state, OptionState::Available, "{}", report.option);
    }
    for model in ["aurora", "tundra", "volt-s"] {
        let defaults = configurator.default_selection(model).expect("a model");
        assert!(configurator.is_valid(&defaults), "{model}: {:?}", configurator.codes(&defaults));
    }
}

#[test]
fn defaults_skip_what_the_model_does_not_offer() {
    let configurator = configurator();
    let tundra = configurator.default_selection("tundra").expect("a model");
    assert_eq!(configurator.codes(&tundra), ["tundra", "petrol-2.0", "white", "cloth", "wheels-18"]);
    assert!(configurator.default_selection("sunroof").is_err());
    assert!(configurator.default_selection("nope").is_err());
}

#[test]
fn the_towing_package_with_the_small_engine_offers_to_drop_the_engine() {
    let configurator = configurator();
    let current = picks(&configurator, &["aurora", "petrol-1.2", "white"]);
    let evaluation = configurator.evaluate(&current);
    let OptionState::Unavailable { because } = state(&evaluation, "pkg-towing") else { panic!("towing must be unavailable") };
    assert_eq!(rule_ids(because), ["towing-not-small-engine"]);
    assert_eq!(because.picks, ["petrol-1.2"]);

    let Fix::Change(change) = configurator.fix(&current, "pkg-towing").expect("a demo code") else { panic!("towing is possible") };
    assert_eq!(change.dropped, ["petrol-1.2"]);
    assert!(change.replaced.is_empty());
    assert_eq!(change.selection, ["aurora", "white", "pkg-towing"]);
    assert_eq!(change.forced, ["tow-hitch"]);
}

#[test]
fn an_electric_car_greys_out_exhaust_options_with_the_rule_as_reason() {
    let configurator = configurator();
    let evaluation = configurator.evaluate(&picks(&configurator, &["volt-s"]));
    for (option, rule) in [("sport-exhaust", "ev-no-sport-exhaust"), ("chrome-tailpipes", "ev-no-tailpipes")] {
        let OptionState::Unavailable { because } = state(&evaluation, option) else { panic!("{option} must be unavailable") };
        assert_eq!(rule_ids(because), [rule]);
        assert_eq!(because.picks, ["volt-s"]);
        assert!(because.rules[0].message.contains("electric"));
    }
    assert!(matches!(state(&evaluation, "petrol-2.0"), OptionState::Unavailable { .. }));
    assert_eq!(state(&evaluation, "electric-82"), &OptionState::Available);
    // Picking another model is a swap, so the other models stay available.
    assert_eq!(state(&evaluation, "tundra"), &OptionState::Available);
}

#[test]
fn the_sport_package_brings_its_seats_and_wheels_at_no_cost() {
    let configurator = configurator();
    let evaluation = configurator.evaluate(&picks(&configurator, &["aurora", "pkg-sport"]));
    for option in ["sport-seats", "wheels-19"] {
        let OptionState::Required { because } = state(&evaluation, option) else { panic!("{option} must be required") };
        assert_eq!(rule_ids(because), ["sport-package"]);
        assert_eq!(because.picks, ["pkg-sport"]);
    }
    let OptionState::Unavailable { because } = state(&evaluation, "leather") else { panic!("one interior only") };
    assert_eq!(because.groups, ["interior"]);

    let cheapest = evaluation.cheapest.expect("consistent");
    let seats = cheapest.price.lines.iter().find(|line| line.option == "sport-seats").expect("in the completion");
    assert_eq!((seats.amount, &seats.kind), (0, &LineKind::Included { package: "pkg-sport".into() }));
    assert_eq!(cheapest.options, ["aurora", "petrol-1.2", "white", "sport-seats", "wheels-19", "pkg-sport"]);
    assert_eq!(cheapest.price.total, 3_290_000 + 350_000);
}

#[test]
fn metallic_paint_costs_more_on_the_tundra_only() {
    let configurator = configurator();
    let on_tundra = configurator.price(&picks(&configurator, &["tundra", "silver-metallic"]));
    let on_aurora = configurator.price(&picks(&configurator, &["aurora", "silver-metallic"]));
    assert_eq!(on_tundra.total - 4_550_000, 90_000 + 35_000);
    assert_eq!(on_aurora.total - 3_290_000, 90_000);
    let surcharge = on_tundra.lines.last().expect("an adjustment line");
    assert_eq!(surcharge.kind, LineKind::Adjustment { rule: "silver-on-tundra".into() });
    assert_eq!((surcharge.option.as_str(), surcharge.amount), ("silver-metallic", 35_000));
    assert_eq!(on_tundra.lines[0].kind, LineKind::Base);
    assert_eq!(on_tundra.currency, "EUR");
}

#[test]
fn the_winter_package_makes_a_heated_steering_wheel_mandatory() {
    let configurator = configurator();
    let evaluation = configurator.evaluate(&picks(&configurator, &["tundra", "pkg-winter"]));
    let OptionState::Required { because } = state(&evaluation, "steering-heated") else { panic!("must be required") };
    assert!(rule_ids(because).contains(&"winter-steering"), "{because:?}");
    assert!(because.picks.contains(&"pkg-winter".to_owned()));
    assert!(matches!(state(&evaluation, "steering-heated-sport"), OptionState::Unavailable { .. }));
    // On the Aurora the sport package is possible, so either wheel will do.
    let evaluation = configurator.evaluate(&picks(&configurator, &["aurora", "pkg-winter"]));
    assert_eq!(state(&evaluation, "steering-heated"), &OptionState::Available);
    assert_eq!(
        state(&evaluation, "heated-seats"),
        &OptionState::Required {
            because: Because {
                picks: vec!["pkg-winter".into()],
                rules: vec![motorpool_configurator::domain::RuleRef {
                    id: "winter-package".into(),
                    message: "The winter package includes heated front seats.".into()
                }],
                groups: vec![],
            }
        }
    );
}

#[test]
fn a_conflicting_selection_says_why_and_can_be_repaired() {
    let configurator = configurator();
    let current = picks(&configurator, &["volt-s", "sport-exhaust", "sunroof"]);
    let evaluation = configurator.evaluate(&current);
    assert!(!evaluation.is_consistent && evaluation.cheapest.is_none());
    let conflict = evaluation.conflict.expect("a reason");
    assert_eq!(
        (rule_ids(&conflict), conflict.picks.clone()),
        (vec!["ev-no-sport-exhaust"], vec!["volt-s".to_owned(), "sport-exhaust".to_owned()])
    );
    let Fix::Change(change) = configurator.repair(&current) else { panic!("repairable") };
    assert_eq!(change.dropped, ["sport-exhaust"]);
}

#[test]
fn a_swap_in_a_single_choice_group_replaces_the_pick() {
    let configurator = configurator();
    let current = picks(&configurator, &["aurora", "petrol-1.2", "pkg-towing"]);
    let Fix::Change(change) = configurator.fix(&current, "diesel-2.0").expect("a demo code") else { panic!("possible") };
    assert_eq!((change.replaced, change.dropped), (vec!["petrol-1.2".to_owned()], vec![]));
    let Fix::Change(change) = configurator.fix(&current, "volt-s").expect("a demo code") else { panic!("possible") };
    assert_eq!(change.replaced, ["aurora"]);
    assert_eq!(change.dropped, ["petrol-1.2", "pkg-towing"]);
    assert!(change.forced.is_empty());
}

#[test]
fn the_evaluation_serializes_for_the_wire() {
    let configurator = configurator();
    let evaluation = configurator.evaluate(&picks(&configurator, &["volt-s"]));
    let json = serde_json::to_value(&evaluation).expect("serializable");
    assert_eq!(json["catalogVersion"], 1);
    let exhaust = json["options"].as_array().expect("options").iter().find(|o| o["option"] == "sport-exhaust").expect("present");
    assert_eq!(exhaust["state"], "unavailable");
    assert_eq!(exhaust["because"]["rules"][0]["id"], "ev-no-sport-exhaust");
    assert_eq!(json["price"]["lines"][0]["kind"], "base");
}
