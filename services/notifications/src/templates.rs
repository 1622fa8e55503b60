//! Texts per event type and channel, from minijinja templates embedded in the binary. Each
//! event type has one file under `templates/` with a block per channel text (`title` and
//! `body` for in-app and push, `email_subject`, `email_body`, `sms`); user-facing events
//! without a file of their own get `generic.jinja`. Emails also get an HTML part from the
//! `email.html` layout, which escapes everything it is given.
//!
//! Rendering never fails an event: a broken template is logged and the generic text used,
//! because refusing the event would only have it redelivered into the same error forever.

use minijinja::{Environment, UndefinedBehavior, Value, context};
use motorpool_platform::events::Envelope;

use crate::domain::text::{one_line, paragraphs};

/// Event types with texts of their own, and their templates.
const KNOWN: &[(&str, &str)] = &[
    ("identity.user.registered.v1", include_str!("../templates/identity.user.registered.v1.jinja")),
    ("payments.wallet.topped_up.v1", include_str!("../templates/payments.wallet.topped_up.v1.jinja")),
    ("payments.charge.succeeded.v1", include_str!("../templates/payments.charge.succeeded.v1.jinja")),
    ("payments.charge.failed.v1", include_str!("../templates/payments.charge.failed.v1.jinja")),
    ("payments.refund.completed.v1", include_str!("../templates/payments.refund.completed.v1.jinja")),
    ("payments.authorization.voided.v1", include_str!("../templates/payments.authorization.voided.v1.jinja")),
    ("shop.order.placed.v1", include_str!("../templates/shop.order.placed.v1.jinja")),
    ("shop.order.failed.v1", include_str!("../templates/shop.order.failed.v1.jinja")),
    ("factory.order.placed.v1", FACTORY_ORDER),
    ("factory.order.awaiting_parts.v1", FACTORY_ORDER),
    ("factory.order.scheduled.v1", FACTORY_ORDER),
    ("factory.order.in_production.v1", FACTORY_ORDER),
    ("factory.order.quality_checked.v1", FACTORY_ORDER),
    ("factory.order.shipped.v1", FACTORY_ORDER),
    ("factory.order.delivered.v1", FACTORY_ORDER),
    ("factory.order.cancelled.v1", FACTORY_ORDER),
    ("factory.order.failed.v1", FACTORY_ORDER),
];
/// One text for every step of a car order: the event's `label` names the step.
const FACTORY_ORDER: &str = include_str!("../templates/factory.order.jinja");
const GENERIC: &str = "generic.jinja";
const EMAIL_LAYOUT: &str = "email.html";

/// Every text of one notification, cleaned and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub body: String,
    pub email_subject: String,
    pub email_body: String,
    pub sms: String,
}

/// Who the texts address, from the local copy of users (absent when identity's event has not
/// reached us).
#[derive(Debug, Clone)]
pub struct Recipient {
    pub name: String,
    pub email: String,
}

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles every template; a syntax error stops the service at start, not at the first
    /// event.
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_filter("money", money);
        env.add_filter("event_title", event_title);
        env.add_filter("humanize", humanize);
        for (kind, source) in KNOWN {
            env.add_template(kind, source)?;
        }
        env.add_template(GENERIC, include_str!("../templates/generic.jinja"))?;
        env.add_template(EMAIL_LAYOUT, include_str!("../templates/email.html"))?;
        Ok(Self { env })
    }

    /// Whether `kind` has texts of its own.
    pub fn is_known(kind: &str) -> bool {
        KNOWN.iter().any(|(k, _)| *k == kind)
    }

    /// The texts of `event` for `recipient`.
    pub fn render(&self, event: &Envelope, recipient: Option<&Recipient>) -> Rendered {
        let ctx = context! {
            event => context! { id => &event.id, type => &event.kind, source => &event.source, time => &event.time },
            data => Value::from_serialize(&event.data),
            user => context! {
                name => recipient.map_or("there", |r| r.name.as_str()),
                email => recipient.map(|r| r.email.as_str()),
            },
        };
        if Self::is_known(&event.kind) {
            match self.render_blocks(&event.kind, &ctx) {
                Ok(r) => return r,
                Err(e) => tracing::error!(event_type = %event.kind, error = %e, "template failed; using the generic text"),
            }
        }
        self.render_blocks(GENERIC, &ctx).unwrap_or_else(|e| {
            tracing::error!(event_type = %event.kind, error = %e, "generic template failed");
            let title = one_line(&event.kind);
            Rendered { email_subject: title.clone(), email_body: title.clone(), sms: title.clone(), body: title.clone(), title }
        })
    }

    fn render_blocks(&self, name: &str, ctx: &Value) -> Result<Rendered, minijinja::Error> {
        // Evaluating the template once and rendering each block from its state keeps one
        // file per event type; the template's own output (whitespace between blocks) is unused.
        let mut captured = self.env.get_template(name)?.render_captured(ctx)?;
        captured.with_state_mut(|state| {
            Ok(Rendered {
                title: one_line(&state.render_block("title")?),
                body: paragraphs(&state.render_block("body")?),
                email_subject: one_line(&state.render_block("email_subject")?),
                email_body: paragraphs(&state.render_block("email_body")?),
                sms: one_line(&state.render_block("sms")?),
            })
        })
    }

    /// The HTML part of an email whose text part is `body`: the same paragraphs, escaped.
    pub fn email_html(&self, subject: &str, body: &str) -> Result<String, minijinja::Error> {
        let paragraphs: Vec<Vec<&str>> = body.split("\n\n").map(|p| p.lines().collect()).collect();
        self.env.get_template(EMAIL_LAYOUT)?.render(context! { subject, paragraphs })
    }
}

/// `{"amount": "12.50", "currency": "EUR"}` as `12.50 EUR`; anything else as it is.
fn money(value: Value) -> String {
    let field = |name: &str| value.get_attr(name).ok().filter(|v| !v.is_undefined() && !v.is_none()).map(|v| v.to_string());
    match (field("amount"), field("currency")) {
        (Some(amount), Some(currency)) => format!("{amount} {currency}"),
        (Some(amount), None) => amount,
        _ if value.is_undefined() || value.is_none() || value.as_object().is_some() => String::new(),
        _ => value.to_string(),
    }
}

/// A machine word such as `insufficient_funds` as `insufficient funds`.
fn humanize(value: Value) -> String {
    value.to_string().replace('_', " ")
}

/// `payments.wallet.topped_up.v1` as `Wallet topped up`: the entity and what happened to it.
fn event_title(kind: &str) -> String {
    let parts: Vec<&str> = kind.split('.').collect();
    let words = match parts.as_slice() {
        [_service, middle @ .., _version] if !middle.is_empty() => middle.join(" ").replace('_', " "),
        _ => kind.replace(['_', '.'], " "),
    };
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Notification".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(kind: &str, data: serde_json::Value) -> Envelope {
        Envelope {
            id: "0192f0c1-0000-7000-8000-000000000001".into(),
            kind: kind.into(),
            source: kind.split('.').next().unwrap().into(),
            time: "2026-01-01T10:00:00Z".into(),
            subject: "s-1".into(),
            data,
            traceparent: None,
        }
    }

    fn ann() -> Recipient {
        Recipient { name: "Ann Lee".into(), email: "ann@example.com".into() }
    }

    fn eur(amount: &str) -> serde_json::Value {
        json!({"amount": amount, "currency": "EUR"})
    }

    #[test]
    fn every_known_event_type_renders_every_channel() {
        let t = Templates::new().unwrap();
        let mut samples = [
            ("identity.user.registered.v1", json!({"userId": "u", "email": "ann@example.com", "fullName": "Ann Lee", "role": "customer"})),
            ("payments.wallet.topped_up.v1", json!({"transactionId": "t", "userId": "u", "amount": eur("20.00"), "balance": eur("35.50")})),
            (
                "payments.charge.succeeded.v1",
                json!({"chargeId": "c", "userId": "u", "amount": eur("12.50"), "reference": "ride-7", "description": "Ride to Lyon", "invoiceId": "inv-1"}),
            ),
            (
                "payments.charge.failed.v1",
                json!({"userId": "u", "amount": eur("99.00"), "reference": "rental-3", "reason": "insufficient funds"}),
            ),
            (
                "payments.refund.completed.v1",
                json!({"refundId": "r", "chargeId": "c", "userId": "u", "amount": eur("5.00"), "reference": "ride-7"}),
            ),
            ("payments.authorization.voided.v1", json!({"chargeId": "c", "userId": "u", "amount": eur("40.00"), "reference": "rental-9"})),
            (
                "shop.order.placed.v1",
                json!({"orderId": "o-1", "userId": "u", "total": eur("59.90"), "lines": [{"productCode": "BPF-VWGOLF", "quantity": 1}]}),
            ),
            ("shop.order.failed.v1", json!({"orderId": "o-2", "userId": "u", "reason": "insufficient_funds"})),
            (
                "factory.order.placed.v1",
                json!({"orderId": "f-1", "userId": "u", "configId": "c", "model": "tundra", "price": eur("58250.00")}),
            ),
        ]
        .to_vec();
        // Every status an order reaches has its own event of one shape.
        let statuses = [
            ("awaiting_parts", "Awaiting Parts"),
            ("scheduled", "Scheduled"),
            ("in_production", "In Production"),
            ("quality_checked", "Quality Check"),
            ("shipped", "Shipped"),
            ("delivered", "Delivered"),
            ("cancelled", "Cancelled"),
            ("failed", "Failed"),
        ];
        let kinds: Vec<String> = statuses.iter().map(|(status, _)| format!("factory.order.{status}.v1")).collect();
        for ((status, label), kind) in statuses.iter().zip(&kinds) {
            let data = json!({"orderId": "f-1", "userId": "u", "status": status, "label": label, "estimatedDelivery": "2026-12-06", "reason": null});
            samples.push((kind.as_str(), data));
        }
        assert_eq!(samples.len(), KNOWN.len());
        for (kind, data) in samples {
            let r = t.render(&envelope(kind, data), Some(&ann()));
            for (name, text) in
                [("title", &r.title), ("body", &r.body), ("subject", &r.email_subject), ("email", &r.email_body), ("sms", &r.sms)]
            {
                assert!(!text.is_empty(), "{kind} {name} is empty");
                assert!(!text.contains("{{") && !text.contains("{%"), "{kind} {name}: {text}");
            }
            assert!(!r.title.contains('\n') && !r.email_subject.contains('\n'));
        }
    }

    #[test]
    fn texts_carry_the_users_data() {
        let t = Templates::new().unwrap();
        let welcome = t.render(
            &envelope(
                "identity.user.registered.v1",
                json!({"userId": "u", "email": "ann@example.com", "fullName": "Ann Lee", "role": "customer"}),
            ),
            None,
        );
        assert_eq!(welcome.title, "Welcome to Motorpool");
        assert_eq!(welcome.email_subject, "Welcome to Motorpool");
        assert!(welcome.body.starts_with("Hi Ann Lee, your account is ready."), "{}", welcome.body);
        assert!(welcome.email_body.contains("Your account ann@example.com is ready."), "{}", welcome.email_body);

        let charge = t.render(
            &envelope(
                "payments.charge.succeeded.v1",
                json!({"chargeId": "c", "userId": "u", "amount": eur("12.50"), "reference": "ride-7", "description": "Ride to Lyon", "invoiceId": null}),
            ),
            Some(&ann()),
        );
        assert_eq!(charge.title, "Payment of 12.50 EUR received");
        assert_eq!(charge.body, "We charged 12.50 EUR for Ride to Lyon. Reference ride-7.");
        assert!(
            charge.email_body.starts_with("Hi Ann Lee,\n\nwe received your payment of 12.50 EUR for Ride to Lyon."),
            "{}",
            charge.email_body
        );
        assert!(!charge.email_body.contains("Invoice"), "no invoice line without an invoice: {}", charge.email_body);

        let topped = t.render(
            &envelope(
                "payments.wallet.topped_up.v1",
                json!({"transactionId": "t", "userId": "u", "amount": eur("20.00"), "balance": eur("35.50")}),
            ),
            Some(&ann()),
        );
        assert_eq!(topped.body, "20.00 EUR was added to your wallet. Your balance is now 35.50 EUR.");

        let failed = t.render(
            &envelope(
                "payments.charge.failed.v1",
                json!({"userId": "u", "amount": eur("99.00"), "reference": "rental-3", "reason": "insufficient_funds"}),
            ),
            Some(&ann()),
        );
        assert!(failed.body.starts_with("We could not charge 99.00 EUR for rental-3: insufficient funds."), "{}", failed.body);
    }

    #[test]
    fn unknown_user_facing_events_get_the_generic_text() {
        let t = Templates::new().unwrap();
        let r = t.render(&envelope("rides.ride.driver_assigned.v1", json!({"userId": "u", "rideId": "r"})), None);
        assert_eq!(r.title, "Ride driver assigned");
        assert_eq!(r.body, "Something happened in your Motorpool account: ride driver assigned.");
        assert!(r.email_body.starts_with("Hi there,"));
        assert!(r.email_body.contains("Event: rides.ride.driver_assigned.v1"));
        assert_eq!(event_title("weird"), "Weird");
    }

    #[test]
    fn data_from_events_cannot_break_out_of_a_title_or_the_html() {
        let t = Templates::new().unwrap();
        let r = t.render(
            &envelope(
                "payments.charge.failed.v1",
                json!({"userId": "u", "amount": eur("1.00"), "reference": "x\r\nBcc: all@example.com", "reason": "<script>alert(1)</script>"}),
            ),
            Some(&ann()),
        );
        assert!(!r.email_subject.contains('\n') && !r.title.contains('\r'));
        let html = t.email_html(&r.email_subject, &r.email_body).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("<br>"), "line breaks kept: {html}");
    }

    #[test]
    fn money_formats_amount_objects_and_tolerates_anything_else() {
        assert_eq!(money(Value::from_serialize(json!({"amount": "12.50", "currency": "EUR"}))), "12.50 EUR");
        assert_eq!(money(Value::from_serialize(json!("7 EUR"))), "7 EUR");
        assert_eq!(money(Value::UNDEFINED), "");
        assert_eq!(money(Value::from_serialize(json!({"currency": "EUR"}))), "");
    }
}
