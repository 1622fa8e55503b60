//! The factory's rules, free of I/O: order statuses and their labels, the bill of materials of
//! a configuration, the deposit, and the production plan's dates.

pub const DAY_MS: i64 = 86_400_000;

/// Days in each stage once production starts: building, the quality check, then shipping.
pub const PRODUCTION_DAYS: i64 = 1;
pub const QUALITY_DAYS: i64 = 1;
pub const SHIPPING_DAYS: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Placed,
    AwaitingParts,
    Scheduled,
    InProduction,
    QualityCheck,
    Shipped,
    Delivered,
    Cancelled,
    Failed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Placed,
        Status::AwaitingParts,
        Status::Scheduled,
        Status::InProduction,
        Status::QualityCheck,
        Status::Shipped,
        Status::Delivered,
        Status::Cancelled,
        Status::Failed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::AwaitingParts => "awaiting_parts",
            Status::Scheduled => "scheduled",
            Status::InProduction => "in_production",
            Status::QualityCheck => "quality_check",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }

    /// As the seed shows it ("In Production").
    pub fn label(self) -> &'static str {
        match self {
            Status::Placed => "Placed",
            Status::AwaitingParts => "Awaiting Parts",
            Status::Scheduled => "Scheduled",
            Status::InProduction => "In Production",
            Status::QualityCheck => "Quality Check",
            Status::Shipped => "Shipped",
            Status::Delivered => "Delivered",
            Status::Cancelled => "Cancelled",
            Status::Failed => "Failed",
        }
    }

    pub fn parse(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Before production starts an order may be cancelled, its deposit refunded.
    pub fn is_cancellable(self) -> bool {
        matches!(self, Status::Placed | Status::AwaitingParts | Status::Scheduled)
    }

    /// The stage after this one on the production plan, and when it begins relative to the
    /// production day's start.
    pub fn next_on_plan(self) -> Option<(Status, i64)> {
        match self {
            Status::Scheduled => Some((Status::InProduction, 0)),
            Status::InProduction => Some((Status::QualityCheck, PRODUCTION_DAYS * DAY_MS)),
            Status::QualityCheck => Some((Status::Shipped, (PRODUCTION_DAYS + QUALITY_DAYS) * DAY_MS)),
            Status::Shipped => Some((Status::Delivered, (PRODUCTION_DAYS + QUALITY_DAYS + SHIPPING_DAYS) * DAY_MS)),
            _ => None,
        }
    }
}

/// The parts a configuration is built from: one chassis for the model and one part per option
/// (`CAR-<CODE>` in upper case), sorted by SKU.
pub fn bill_of_materials(model: &str, options: &[String]) -> Vec<(String, i64)> {
    let mut skus: Vec<String> = std::iter::once(model).chain(options.iter().map(String::as_str)).map(sku).collect();
    skus.sort();
    skus.dedup();
    skus.into_iter().map(|s| (s, 1)).collect()
}

pub fn sku(code: &str) -> String {
    let cleaned: String = code.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_uppercase() } else { '-' }).collect();
    format!("CAR-{cleaned}")
}

/// `percent` of `price`, rounded half up to the minor unit.
pub fn deposit(price: i64, percent: i64) -> i64 {
    (price * percent + 50) / 100
}

/// The first day a new order may be built: `lead_days` after `now`'s day.
pub fn earliest_day(now_ms: i64, lead_days: i64) -> i64 {
    now_ms.div_euclid(DAY_MS) + lead_days
}

/// When the car arrives if production starts on `day`.
pub fn delivery_day(day: i64) -> i64 {
    day + PRODUCTION_DAYS + QUALITY_DAYS + SHIPPING_DAYS
}

/// `YYYY-MM-DD` of a day number.
pub fn date(day: i64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(day);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bill_of_materials_has_one_part_per_option_and_a_chassis() {
        let bom = bill_of_materials("tundra", &["tundra".into(), "v6-3.0".into(), "red".into()]);
        assert_eq!(bom, vec![("CAR-RED".into(), 1), ("CAR-TUNDRA".into(), 1), ("CAR-V6-3.0".into(), 1)]);
    }

    #[test]
    fn deposits_round_half_up_to_the_cent() {
        assert_eq!(deposit(5_825_000, 10), 582_500);
        assert_eq!(deposit(105, 10), 11);
        assert_eq!(deposit(104, 10), 10);
        assert_eq!(deposit(1_000, 0), 0);
    }

    #[test]
    fn the_plan_runs_from_scheduled_to_delivered_in_order() {
        let mut s = Status::Scheduled;
        let mut seen = vec![s];
        let mut last_offset = -1;
        while let Some((next, offset)) = s.next_on_plan() {
            assert!(offset > last_offset, "stages begin later and later");
            last_offset = offset;
            s = next;
            seen.push(s);
        }
        assert_eq!(seen, [Status::Scheduled, Status::InProduction, Status::QualityCheck, Status::Shipped, Status::Delivered]);
        assert_eq!(last_offset, (delivery_day(0)) * DAY_MS, "delivered on the delivery day");
    }

    #[test]
    fn dates_and_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_781), "2026-11-24");
        assert_eq!(earliest_day(20_781 * DAY_MS + 5, 7), 20_788);
        assert!(Status::ALL.iter().all(|s| Status::parse(s.code()) == Some(*s)));
        assert!(Status::Scheduled.is_cancellable() && !Status::InProduction.is_cancellable());
    }
}
