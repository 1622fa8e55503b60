//! Validated inputs: SKUs, owners, hold lines. No I/O.

use crate::app::InventoryError;

/// One line of a hold: units of a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub quantity: i64,
}

/// Most lines in one hold request.
pub const MAX_LINES: usize = 100;

/// A SKU: 1 to 64 characters of ASCII letters, digits, `-`, `_`, `.`.
pub fn check_sku(sku: &str) -> Result<(), String> {
    if sku.is_empty() || sku.len() > 64 || !sku.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return Err(format!("sku {sku:?} must be 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

/// An owner: `<kind>:<id>`, at most 200 visible ASCII characters.
pub fn check_owner(owner: &str) -> Result<(), String> {
    let well_formed = owner.split_once(':').is_some_and(|(kind, id)| !kind.is_empty() && !id.is_empty());
    if !well_formed || owner.len() > 200 || !owner.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("owner must look like \"cart:<id>\" or \"order:<id>\" (at most 200 visible ASCII characters)".into());
    }
    Ok(())
}

/// Checks every line and merges lines of the same SKU; sorted by SKU, the order locks are
/// taken in.
pub fn normalize_lines(lines: Vec<Line>, max_quantity: i64) -> Result<Vec<Line>, String> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(format!("a hold needs 1 to {MAX_LINES} lines"));
    }
    let mut out: Vec<Line> = Vec::with_capacity(lines.len());
    for line in lines {
        check_sku(&line.sku)?;
        if line.quantity < 1 || line.quantity > max_quantity {
            return Err(format!("quantity of {} must be between 1 and {max_quantity}", line.sku));
        }
        match out.iter_mut().find(|l| l.sku == line.sku) {
            Some(l) => l.quantity += line.quantity,
            None => out.push(line),
        }
    }
    out.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(out)
}

/// Checks hold ids and removes duplicates; sorted, the order locks are taken in.
pub fn normalize_ids(ids: &[String]) -> Result<Vec<String>, InventoryError> {
    if ids.is_empty() || ids.len() > MAX_LINES {
        return Err(InventoryError::Invalid(format!("give 1 to {MAX_LINES} hold ids")));
    }
    let mut out: Vec<String> = ids.to_vec();
    if out.iter().any(|id| id.is_empty() || id.len() > 64) {
        return Err(InventoryError::Invalid("hold ids are 1 to 64 characters".into()));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i64) -> Line {
        Line { sku: sku.into(), quantity }
    }

    #[test]
    fn lines_are_merged_sorted_and_bounded() {
        let out = normalize_lines(vec![line("B", 2), line("A", 1), line("B", 3)], 10).unwrap();
        assert_eq!(out, vec![line("A", 1), line("B", 5)]);
        assert!(normalize_lines(vec![], 10).is_err());
        assert!(normalize_lines(vec![line("A", 0)], 10).is_err());
        assert!(normalize_lines(vec![line("A", 11)], 10).is_err());
        assert!(normalize_lines(vec![line("bad sku", 1)], 10).is_err());
    }

    #[test]
    fn owners_name_their_kind() {
        assert!(check_owner("cart:0192").is_ok());
        assert!(check_owner("order:1").is_ok());
        assert!(check_owner("cart").is_err());
        assert!(check_owner(":x").is_err());
        assert!(check_owner("cart: x").is_err());
    }

    #[test]
    fn ids_are_deduplicated() {
        let ids = normalize_ids(&["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(ids, vec!["a".to_owned(), "b".to_owned()]);
        assert!(normalize_ids(&[]).is_err());
    }
}
