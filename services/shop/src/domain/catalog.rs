//! The demo parts catalog: part types crossed with car models, plus parts that fit every car.
//! Deterministic, so every replica and every run seeds the same codes and prices.

/// A part of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub code: String,
    pub name: String,
    pub description: String,
    pub category: &'static str,
    pub price_minor: i64,
    pub models: Vec<&'static str>,
}

/// Models with their code suffix and a price factor in percent (parts for bigger or rarer
/// cars cost more).
pub const MODELS: &[(&str, &str, i64)] = &[
    ("VW Golf", "VWGOLF", 100),
    ("VW Passat", "VWPASS", 110),
    ("Audi A3", "AUDA3", 120),
    ("Audi A4", "AUDA4", 130),
    ("BMW 3 Series", "BMW3", 135),
    ("BMW 5 Series", "BMW5", 150),
    ("Mercedes C-Class", "MBC", 145),
    ("Toyota Corolla", "TOYCOR", 95),
    ("Ford Focus", "FOFOC", 90),
    ("Renault Clio", "RECLIO", 85),
    ("Skoda Octavia", "SKOCT", 95),
    ("Volvo XC60", "VOXC60", 140),
];

/// Part types fitted per model: (code prefix, name, category, base price in minor units, description).
const PER_MODEL: &[(&str, &str, &str, i64, &str)] = &[
    ("BPF", "Front brake pads", "Brakes", 4_990, "Low-dust ceramic pads for the front axle, set of four."),
    ("BPR", "Rear brake pads", "Brakes", 3_990, "Ceramic pads for the rear axle, set of four."),
    ("BDF", "Front brake discs", "Brakes", 8_990, "Ventilated discs for the front axle, pair."),
    ("BDR", "Rear brake discs", "Brakes", 6_990, "Solid discs for the rear axle, pair."),
    ("OFL", "Oil filter", "Filters", 1_290, "Spin-on oil filter with anti-drain-back valve."),
    ("AFL", "Air filter", "Filters", 1_890, "Panel air filter, OE fit."),
    ("CFL", "Cabin filter", "Filters", 2_190, "Activated-carbon cabin filter against dust and odours."),
    ("FFL", "Fuel filter", "Filters", 2_490, "In-line fuel filter."),
    ("SPK", "Spark plugs", "Ignition", 3_290, "Iridium spark plugs, set of four."),
    ("ICL", "Ignition coil", "Ignition", 4_590, "Pencil ignition coil, one cylinder."),
    ("WBF", "Front wiper blades", "Visibility", 2_990, "Flat wiper blades, pair."),
    ("HLB", "Headlight bulb H7", "Lighting", 1_490, "Long-life H7 halogen bulb."),
    ("BAT", "Battery 70 Ah", "Electrical", 12_990, "AGM start-stop battery, 70 Ah."),
    ("ALT", "Alternator", "Electrical", 24_990, "Remanufactured alternator, exchange unit."),
    ("STM", "Starter motor", "Electrical", 18_990, "Remanufactured starter motor, exchange unit."),
    ("TBK", "Timing belt kit", "Engine", 14_990, "Timing belt, tensioner and idler pulleys."),
    ("WPU", "Water pump", "Cooling", 7_990, "Water pump with gasket."),
    ("RAD", "Radiator", "Cooling", 15_990, "Aluminium core radiator."),
    ("THS", "Thermostat", "Cooling", 2_790, "Thermostat with housing seal."),
    ("SAF", "Front shock absorbers", "Suspension", 16_990, "Gas shock absorbers for the front axle, pair."),
    ("SAR", "Rear shock absorbers", "Suspension", 12_990, "Gas shock absorbers for the rear axle, pair."),
    ("CSP", "Coil springs", "Suspension", 9_990, "Front coil springs, pair."),
    ("CLK", "Clutch kit", "Transmission", 21_990, "Clutch disc, pressure plate and release bearing."),
    ("CVJ", "CV joint", "Transmission", 6_490, "Outer constant-velocity joint with boot."),
    ("EXM", "Exhaust middle silencer", "Exhaust", 8_490, "Aluminised steel middle silencer."),
    ("LMB", "Lambda sensor", "Exhaust", 5_990, "Upstream oxygen sensor."),
];

/// Parts that fit every model: (code, name, category, price in minor units, description).
const UNIVERSAL: &[(&str, &str, &str, i64, &str)] = &[
    ("OIL-5W30-5L", "Engine oil 5W-30, 5 l", "Fluids", 3_990, "Fully synthetic long-life engine oil."),
    ("OIL-0W20-5L", "Engine oil 0W-20, 5 l", "Fluids", 4_490, "Low-viscosity synthetic oil for modern engines."),
    ("COOL-G12-5L", "Coolant G12, 5 l", "Fluids", 1_990, "Ready-mixed antifreeze coolant to -35 °C."),
    ("WASH-WINTER-5L", "Screen wash, winter, 5 l", "Fluids", 890, "Screen wash to -20 °C."),
    ("BRAKE-DOT4-1L", "Brake fluid DOT 4, 1 l", "Fluids", 1_290, "DOT 4 brake fluid."),
    ("TYRE-INFL", "Tyre inflator", "Accessories", 3_490, "12 V digital tyre inflator."),
    ("JUMP-LEADS", "Jump leads", "Accessories", 2_290, "3.5 m jump leads, 400 A."),
    ("FIRST-AID", "First aid kit", "Accessories", 1_590, "DIN 13164 car first aid kit."),
    ("WARN-TRI", "Warning triangle", "Accessories", 990, "Folding warning triangle."),
    ("MAT-SET", "Rubber floor mats", "Accessories", 2_990, "Trimmable rubber floor mats, set of four."),
    ("BULB-KIT", "Spare bulb kit", "Lighting", 1_190, "Spare bulbs and fuses."),
    ("ICE-SCRAPER", "Ice scraper", "Accessories", 390, "Ice scraper with brush."),
];

/// Rounds to the nearest price ending in 90 minor units (x.90).
fn price(base: i64, percent: i64) -> i64 {
    let raw = base * percent / 100;
    (raw / 100) * 100 + 90
}

/// Every part of the demo catalog, in code order.
pub fn demo_parts() -> Vec<Part> {
    let mut parts = Vec::with_capacity(PER_MODEL.len() * MODELS.len() + UNIVERSAL.len());
    for (prefix, name, category, base, description) in PER_MODEL {
        for (model, suffix, factor) in MODELS {
            parts.push(Part {
                code: format!("{prefix}-{suffix}"),
                name: format!("{name} for {model}"),
                description: (*description).to_owned(),
                category,
                price_minor: price(*base, *factor),
                models: vec![model],
            });
        }
    }
    for (code, name, category, p, description) in UNIVERSAL {
        parts.push(Part {
            code: (*code).to_owned(),
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            category,
            price_minor: *p,
            models: MODELS.iter().map(|m| m.0).collect(),
        });
    }
    parts.sort_by(|a, b| a.code.cmp(&b.code));
    parts
}

/// The `models` column: '|'-delimited with a leading and trailing '|'.
pub fn models_column<S: AsRef<str>>(models: &[S]) -> String {
    let names: Vec<&str> = models.iter().map(AsRef::as_ref).collect();
    format!("|{}|", names.join("|"))
}

/// The lowercased text search words are matched against.
pub fn search_column(p: &Part) -> String {
    search_text(&p.code, &p.name, p.category, &p.models)
}

/// The lowercased text of a product that search words are matched against.
pub fn search_text<S: AsRef<str>>(code: &str, name: &str, category: &str, models: &[S]) -> String {
    let names: Vec<&str> = models.iter().map(AsRef::as_ref).collect();
    format!("{code} {name} {category} {}", names.join(" ")).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_hundred_unique_parts_with_positive_prices() {
        let parts = demo_parts();
        assert!(parts.len() >= 300, "{}", parts.len());
        let mut codes: Vec<&str> = parts.iter().map(|p| p.code.as_str()).collect();
        codes.dedup();
        assert_eq!(codes.len(), parts.len(), "codes are unique and sorted");
        assert!(parts.iter().all(|p| p.price_minor > 0 && !p.models.is_empty()));
        assert_eq!(price(4_990, 100), 4_990);
        assert_eq!(price(4_990, 120), 5_990);
    }
}
