//! The shop's pure rules: the demo catalog, cart requests, search words. No I/O.

pub mod catalog;

/// What a cart request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Adds units to a line (creating it).
    Add,
    /// Sets a line's quantity; 0 removes the line.
    Set,
    Remove,
    /// Re-checks the cart's holds.
    Check,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Set => "set",
            Action::Remove => "remove",
            Action::Check => "check",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "add" => Some(Action::Add),
            "set" => Some(Action::Set),
            "remove" => Some(Action::Remove),
            "check" => Some(Action::Check),
            _ => None,
        }
    }
}

/// Most units of one product in a cart line.
pub const MAX_LINE_QUANTITY: i64 = 100;

/// A client's request id: 1 to 64 visible ASCII characters.
pub fn check_request_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("requestId must be 1 to 64 visible ASCII characters".into());
    }
    Ok(())
}

/// A product code: 1 to 64 ASCII letters, digits, '-', '_' or '.'.
pub fn check_code(code: &str) -> Result<(), String> {
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err("productCode must be 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    Ok(())
}

/// A product as an administrator defines it, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSpec {
    pub name: String,
    pub description: String,
    pub category: String,
    pub compatible_models: Vec<String>,
}

/// Most car models one product may list.
pub const MAX_MODELS: usize = 50;

/// What is wrong with a product definition, field by field (empty: nothing).
pub fn check_product(p: &ProductSpec) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    let mut text = |field: &'static str, value: &str, min: usize, max: usize| {
        let n = value.trim().chars().count();
        if n < min || n > max || value.trim() != value {
            errors.push((field, format!("{field} must be {min} to {max} characters without leading or trailing spaces")));
        }
    };
    text("name", &p.name, 1, 120);
    text("description", &p.description, 0, 2000);
    text("category", &p.category, 1, 60);
    if p.compatible_models.len() > MAX_MODELS {
        errors.push(("compatibleModels", format!("at most {MAX_MODELS} models")));
    }
    if p.compatible_models.iter().any(|m| m.trim().is_empty() || m.trim() != m || m.chars().count() > 60 || m.contains('|')) {
        errors.push(("compatibleModels", "every model is 1 to 60 characters, without '|' or surrounding spaces".into()));
    }
    errors
}

/// The lowercased words of a search, at most eight, each escaped for `LIKE` with `\`.
pub fn search_words(q: &str) -> Vec<String> {
    q.split_whitespace()
        .take(8)
        .map(|w| w.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_lowercased_escaped_and_bounded() {
        assert_eq!(search_words("  Brake  GOLF "), vec!["brake", "golf"]);
        assert_eq!(search_words("50%_off"), vec!["50\\%\\_off"]);
        assert_eq!(search_words("a b c d e f g h i j").len(), 8);
    }

    #[test]
    fn actions_round_trip() {
        for a in [Action::Add, Action::Set, Action::Remove, Action::Check] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("buy"), None);
    }
}
