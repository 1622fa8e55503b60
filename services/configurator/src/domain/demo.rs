//! The demo catalog seeded on first start: three models (the Aurora sedan, the Tundra SUV and the
//! Volt S electric car) with engines, colours, interiors, wheels, packages and features, and
//! the rules a real configurator has: engines limited to models, an electric car without
//! exhaust options, a towing package the small engine cannot take, a sport package that brings
//! its seats and wheels, a winter package that needs a heated steering wheel, and metallic paint
//! that costs more on the big SUV. Prices are in euro cents.
//!
//! The seed's `POST /api/configure` fields map to groups: `model`, `engine`, `color` and
//! `interior` are single-choice and required; `features` is a multiple-choice group.

use super::catalog::{Catalog, CatalogOption, Choice, Group, Rule, RuleKind};

/// Catalog version of the demo data.
pub const VERSION: u32 = 1;

/// The demo catalog. It passes [`Catalog::validate`].
pub fn catalog() -> Catalog {
    Catalog { version: VERSION, currency: "EUR".into(), groups: groups(), options: options(), rules: rules() }
}

fn groups() -> Vec<Group> {
    let required = Choice::Single { required: true };
    let any = Choice::Multiple { min: 0, max: None };
    [
        ("model", "Model", required),
        ("engine", "Engine", required),
        ("color", "Colour", required),
        ("interior", "Interior", required),
        ("wheels", "Wheels", required),
        ("steering_wheel", "Steering wheel", Choice::Single { required: false }),
        ("packages", "Packages", any),
        ("features", "Features", any),
    ]
    .into_iter()
    .map(|(code, name, choice)| Group { code: code.into(), name: name.into(), choice })
    .collect()
}

/// `(group, code, name, price in cents, is_default)`.
const OPTIONS: &[(&str, &str, &str, i64, bool)] = &[
    ("model", "aurora", "Aurora sedan", 3_290_000, false),
    ("model", "tundra", "Tundra SUV", 4_550_000, false),
    ("model", "volt-s", "Volt S electric", 4_199_000, false),
    ("engine", "petrol-1.2", "1.2 petrol, 110 hp", 0, true),
    ("engine", "petrol-2.0", "2.0 petrol, 190 hp", 240_000, true),
    ("engine", "v6-3.0", "3.0 V6 petrol, 340 hp", 690_000, false),
    ("engine", "diesel-2.0", "2.0 diesel, 150 hp", 290_000, false),
    ("engine", "hybrid-2.5", "2.5 hybrid, 220 hp", 450_000, false),
    ("engine", "electric-64", "Electric, 64 kWh", 0, true),
    ("engine", "electric-82", "Electric long range, 82 kWh", 550_000, false),
    ("color", "white", "Glacier white", 0, true),
    ("color", "black", "Onyx black", 65_000, false),
    ("color", "red", "Racing red", 65_000, false),
    ("color", "silver-metallic", "Silver metallic", 90_000, false),
    ("color", "blue-metallic", "Deep blue metallic", 90_000, false),
    ("color", "pearl-white", "Pearl white tri-coat", 140_000, false),
    ("interior", "cloth", "Cloth", 0, true),
    ("interior", "leatherette", "Vegan leatherette", 120_000, false),
    ("interior", "leather", "Nappa leather", 240_000, false),
    ("interior", "sport-seats", "Sport seats in Alcantara", 180_000, false),
    ("wheels", "wheels-17", "17\" alloy wheels", 0, true),
    ("wheels", "wheels-18", "18\" alloy wheels", 80_000, true),
    ("wheels", "wheels-19", "19\" sport wheels", 150_000, false),
    ("wheels", "wheels-20", "20\" all-terrain wheels", 220_000, false),
    ("steering_wheel", "steering-heated", "Heated steering wheel", 35_000, false),
    ("steering_wheel", "steering-heated-sport", "Heated sport steering wheel", 45_000, false),
    ("packages", "pkg-sport", "Sport package", 350_000, false),
    ("packages", "pkg-winter", "Winter package", 120_000, false),
    ("packages", "pkg-towing", "Towing package", 110_000, false),
    ("packages", "pkg-tech", "Technology package", 200_000, false),
    ("features", "sunroof", "Sunroof", 110_000, false),
    ("features", "navigation", "GPS navigation", 90_000, false),
    ("features", "head-up-display", "Head-up display", 100_000, false),
    ("features", "heated-seats", "Heated front seats", 45_000, false),
    ("features", "tow-hitch", "Retractable tow hitch", 75_000, false),
    ("features", "sport-exhaust", "Sport exhaust", 130_000, false),
    ("features", "chrome-tailpipes", "Chrome tailpipes", 25_000, false),
    ("features", "roof-rails", "Roof rails", 40_000, false),
    ("features", "premium-audio", "Premium audio", 120_000, false),
    ("features", "parking-assist", "Parking assist", 60_000, false),
];

fn options() -> Vec<CatalogOption> {
    OPTIONS
        .iter()
        .map(|&(group, code, name, price, is_default)| CatalogOption {
            code: code.into(),
            name: name.into(),
            group: group.into(),
            price,
            is_default,
        })
        .collect()
}

fn rules() -> Vec<Rule> {
    vec![
        requires("petrol-1.2-models", "The 1.2 petrol engine is offered on the Aurora only.", "petrol-1.2", &["aurora"]),
        requires(
            "petrol-2.0-models",
            "The 2.0 petrol engine is offered on the Aurora and the Tundra.",
            "petrol-2.0",
            &["aurora", "tundra"],
        ),
        requires("v6-models", "The V6 is offered on the Tundra only.", "v6-3.0", &["tundra"]),
        requires("diesel-models", "The diesel engine is offered on the Aurora and the Tundra.", "diesel-2.0", &["aurora", "tundra"]),
        requires("hybrid-models", "The hybrid is offered on the Aurora and the Tundra.", "hybrid-2.5", &["aurora", "tundra"]),
        requires("electric-64-models", "Electric drive is offered on the Volt S only.", "electric-64", &["volt-s"]),
        requires("electric-82-models", "Electric drive is offered on the Volt S only.", "electric-82", &["volt-s"]),
        excludes("ev-no-sport-exhaust", "An electric car has no exhaust to tune.", "volt-s", "sport-exhaust"),
        excludes("ev-no-tailpipes", "An electric car has no tailpipes.", "volt-s", "chrome-tailpipes"),
        requires("wheels-17-models", "The Tundra rides on 18\" wheels or larger.", "wheels-17", &["aurora", "volt-s"]),
        requires("wheels-20-models", "20\" all-terrain wheels fit the Tundra only.", "wheels-20", &["tundra"]),
        requires("roof-rails-models", "Roof rails are offered on the Tundra only.", "roof-rails", &["tundra"]),
        package("towing-package", "The towing package includes a retractable tow hitch.", "pkg-towing", &["tow-hitch"]),
        requires("towing-models", "The towing package is offered on the Aurora and the Tundra.", "pkg-towing", &["aurora", "tundra"]),
        excludes("towing-not-small-engine", "The 1.2 petrol engine is not rated for towing.", "pkg-towing", "petrol-1.2"),
        package(
            "sport-package",
            "The sport package includes sport seats and 19\" sport wheels.",
            "pkg-sport",
            &["sport-seats", "wheels-19"],
        ),
        requires("sport-models", "The sport package is offered on the Aurora and the Volt S.", "pkg-sport", &["aurora", "volt-s"]),
        excludes("sport-not-diesel", "The sport package is not offered with the diesel engine.", "pkg-sport", "diesel-2.0"),
        requires(
            "sport-steering",
            "The heated sport steering wheel comes with the sport package.",
            "steering-heated-sport",
            &["pkg-sport"],
        ),
        package("winter-package", "The winter package includes heated front seats.", "pkg-winter", &["heated-seats"]),
        rule(
            "winter-steering",
            "The winter package needs a heated steering wheel.",
            RuleKind::MandatoryIf { if_selected: "pkg-winter".into(), group: "steering_wheel".into() },
        ),
        package(
            "tech-package",
            "The technology package includes navigation and a head-up display.",
            "pkg-tech",
            &["navigation", "head-up-display"],
        ),
        requires("hud-needs-navigation", "The head-up display shows navigation, so it needs it.", "head-up-display", &["navigation"]),
        adjustment("silver-on-tundra", "Metallic paint costs more on the Tundra's larger body.", "silver-metallic", &["tundra"], 35_000),
        adjustment("blue-on-tundra", "Metallic paint costs more on the Tundra's larger body.", "blue-metallic", &["tundra"], 35_000),
        adjustment("audio-with-tech", "Premium audio costs less with the technology package.", "premium-audio", &["pkg-tech"], -30_000),
    ]
}

fn rule(id: &str, message: &str, kind: RuleKind) -> Rule {
    Rule { id: id.into(), message: message.into(), kind }
}

fn codes(codes: &[&str]) -> Vec<String> {
    codes.iter().map(|&code| code.into()).collect()
}

fn requires(id: &str, message: &str, option: &str, any_of: &[&str]) -> Rule {
    rule(id, message, RuleKind::Requires { if_selected: option.into(), then_any_of: codes(any_of) })
}

fn excludes(id: &str, message: &str, a: &str, b: &str) -> Rule {
    rule(id, message, RuleKind::Excludes { a: a.into(), b: b.into() })
}

fn package(id: &str, message: &str, package: &str, includes: &[&str]) -> Rule {
    rule(id, message, RuleKind::Package { package: package.into(), includes: codes(includes) })
}

fn adjustment(id: &str, message: &str, option: &str, when_all: &[&str], delta: i64) -> Rule {
    rule(id, message, RuleKind::PriceAdjustment { option: option.into(), when_all: codes(when_all), delta })
}
