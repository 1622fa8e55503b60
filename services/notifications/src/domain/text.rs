//! Rendered texts carry data from other services' events, so they are bounded and cleaned
//! before they are stored or sent: a title (also an email subject) is one line, so it can
//! never inject a header; a body keeps its line breaks and loses other control characters.

pub const TITLE_MAX: usize = 200;
pub const BODY_MAX: usize = 4000;

/// One line of at most `TITLE_MAX` characters, whitespace runs collapsed.
pub fn one_line(s: &str) -> String {
    let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&collapsed, TITLE_MAX)
}

/// Multi-line text of at most `BODY_MAX` characters: control characters other than line
/// breaks removed, trailing spaces and surplus blank lines dropped.
pub fn paragraphs(s: &str) -> String {
    let cleaned: String = s.chars().filter(|c| *c == '\n' || !c.is_control()).collect();
    let mut out: Vec<&str> = Vec::new();
    for line in cleaned.lines().map(str::trim_end) {
        if line.is_empty() && out.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    truncate(&out.join("\n"), BODY_MAX)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_single_bounded_lines() {
        assert_eq!(one_line("  Payment\r\nBcc: evil@example.com\t received "), "Payment Bcc: evil@example.com received");
        let long = one_line(&"x".repeat(500));
        assert_eq!(long.chars().count(), TITLE_MAX);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn bodies_keep_paragraphs_and_drop_control_characters() {
        assert_eq!(paragraphs("\n\nHi Ann,\u{7}\n\n\n\nYour balance   \nis 5.00 EUR.\n\n"), "Hi Ann,\n\nYour balance\nis 5.00 EUR.");
    }
}
