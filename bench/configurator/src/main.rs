//! Configurator solver latency, in process. Builds the generated benchmark catalog (300 options
//! in 30 groups, 1,000 rules), draws a few hundred partial selections the way a customer makes
//! them (1–8 picks, most of them among the options shown as available, a pick in a
//! single-choice group replacing the previous one), and times, many times each:
//!
//! - `evaluate`: the full state (every option's state with its reasons, the price breakdown and
//!   the cheapest valid completion), the work behind one live update;
//! - `cheapest_completion` alone, the part of `evaluate` with an effort budget;
//! - `fix`: the least change that lets the last pick in, the work behind a conflicting click.
//!
//! Prints p50, p99 and max in microseconds, and how many cheapest completions were proven
//! cheapest within the budget. Run it with `--release`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use motorpool_configurator::domain::{Configurator, MODEL_GROUP, OptionState, Selection, generate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SELECTIONS: usize = 300;
const ROUNDS: usize = 20;
const SEED: u64 = 7;

/// A selection and the pick that completed it.
struct Scenario {
    before: Selection,
    pick: String,
    after: Selection,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = generate::Spec::default();
    let catalog = generate::catalog(&spec);
    let started = Instant::now();
    let configurator = Configurator::new(catalog)?;
    let compiled_in = started.elapsed();
    let catalog = configurator.catalog();
    println!(
        "catalog: {} options in {} groups, {} rules, {} models; compiled in {} µs",
        catalog.options.len(),
        catalog.groups.len(),
        catalog.rules.len(),
        spec.models,
        compiled_in.as_micros()
    );

    let mut rng = StdRng::seed_from_u64(SEED);
    let scenarios: Vec<Scenario> = (0..SELECTIONS).map(|_| scenario(&configurator, &mut rng)).collect();
    let evaluations: Vec<_> = scenarios.iter().map(|s| configurator.evaluate(&s.after)).collect();
    let consistent = evaluations.iter().filter(|e| e.is_consistent).count();
    let proven = evaluations.iter().filter(|e| e.cheapest.as_ref().is_some_and(|c| c.is_cheapest)).count();
    println!(
        "selections: {SELECTIONS} of 1-8 picks, {consistent} consistent ({proven} with the cheapest completion proven within the effort budget), {} not",
        SELECTIONS - consistent
    );

    // The baseline, timed in the same run so the ratios below hold on a slower or busier
    // machine: checking one complete configuration against every group bound and rule once.
    let complete: Vec<Selection> =
        evaluations.iter().filter_map(|e| e.cheapest.as_ref()).map(|c| configurator.selection(&c.options)).collect::<Result<_, _>>()?;
    let check = time(&complete, |s| {
        black_box(configurator.is_valid(s));
    });
    let check_p50 = quantile(&check, 0.5);
    report("baseline: one check of a complete configuration against every rule", check, check_p50);
    let evaluate = time(&scenarios, |s| drop(black_box(configurator.evaluate(&s.after))));
    report("evaluate (states + price + cheapest completion)", evaluate, check_p50);
    let cheapest = time(&scenarios, |s| drop(black_box(configurator.cheapest_completion(&s.after))));
    report("cheapest completion alone", cheapest, check_p50);
    let fix = time(&scenarios, |s| drop(black_box(configurator.fix(&s.before, &s.pick))));
    report("fix (least change for the last pick)", fix, check_p50);
    Ok(())
}

/// 1–8 picks made the way a customer clicks: the first is a model most of the time, and each
/// later pick is one the screen shows as available, except one time in ten, when it is any
/// option at all (a greyed-out click, which may conflict).
fn scenario(configurator: &Configurator, rng: &mut StdRng) -> Scenario {
    let catalog = configurator.catalog();
    let models = catalog.options.iter().take_while(|o| o.group == MODEL_GROUP).count();
    let count = rng.random_range(1..=8);
    let mut picks: Vec<usize> = Vec::new();
    let mut before = Vec::new();
    let mut last = 0;
    for index in 0..count {
        let shown = configurator.evaluate(&selection(configurator, &picks));
        let available: Vec<usize> = (0..catalog.options.len()).filter(|&o| shown.options[o].state == OptionState::Available).collect();
        last = if index == 0 && rng.random_bool(0.8) {
            rng.random_range(0..models)
        } else if available.is_empty() || rng.random_bool(0.1) {
            rng.random_range(0..catalog.options.len())
        } else {
            available[rng.random_range(0..available.len())]
        };
        before.clone_from(&picks);
        pick(configurator, &mut picks, last);
    }
    Scenario { before: selection(configurator, &before), pick: catalog.options[last].code.clone(), after: selection(configurator, &picks) }
}

fn selection(configurator: &Configurator, picks: &[usize]) -> Selection {
    picks.iter().filter_map(|&p| configurator.option_id(&configurator.catalog().options[p].code)).collect()
}

/// Adds `option` to the picks, replacing the pick of its group if the group is single-choice.
fn pick(configurator: &Configurator, picks: &mut Vec<usize>, option: usize) {
    let catalog = configurator.catalog();
    let group = &catalog.options[option].group;
    if catalog.groups.iter().any(|g| g.code == *group && g.choice.is_single()) {
        picks.retain(|&p| catalog.options[p].group != *group);
    }
    if !picks.contains(&option) {
        picks.push(option);
    }
}

/// Runs `work` on every item, `ROUNDS` times over, after one warm-up round.
fn time<T>(items: &[T], work: impl Fn(&T)) -> Vec<Duration> {
    items.iter().for_each(&work);
    let mut samples = Vec::with_capacity(ROUNDS * items.len());
    for _ in 0..ROUNDS {
        for item in items {
            let started = Instant::now();
            work(item);
            samples.push(started.elapsed());
        }
    }
    samples.sort_unstable();
    samples
}

/// A quantile of sorted samples, in microseconds.
fn quantile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6
}

fn report(what: &str, sorted: Vec<Duration>, baseline_p50: f64) {
    let (p50, p99, max) = (quantile(&sorted, 0.5), quantile(&sorted, 0.99), quantile(&sorted, 1.0));
    println!(
        "{what}: p50 {p50:.1} µs, p99 {p99:.1} µs, max {max:.1} µs over {} runs; p50 {:.0}x and p99 {:.0}x the baseline's p50",
        sorted.len(),
        p50 / baseline_p50,
        p99 / baseline_p50
    );
}
