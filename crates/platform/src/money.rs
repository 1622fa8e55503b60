//! Money: an integer amount in minor units with its ISO 4217 currency. Never floats. On the
//! wire an amount is a decimal string (`"12.50"`) next to its currency code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A supported currency and how many decimals its minor unit has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

/// The currencies the platform accepts.
pub const CURRENCIES: &[Currency] = &[
    Currency { code: "EUR", exponent: 2 },
    Currency { code: "USD", exponent: 2 },
    Currency { code: "GBP", exponent: 2 },
    Currency { code: "CHF", exponent: 2 },
    Currency { code: "SEK", exponent: 2 },
    Currency { code: "JPY", exponent: 0 },
];

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .copied()
            .find(|c| c.code.eq_ignore_ascii_case(code.trim()))
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    pub fn code(self) -> &'static str {
        self.code
    }

    pub fn exponent(self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0}")]
    UnknownCurrency(String),
    #[error("{0:?} is not an amount like 12.50")]
    Malformed(String),
    #[error("{currency} amounts have at most {exponent} decimals")]
    TooPrecise { currency: &'static str, exponent: u8 },
    #[error("amount too large")]
    Overflow,
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(&'static str, &'static str),
}

/// An amount of money. Arithmetic is checked and refuses mixing currencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    /// Parses a non-negative decimal amount such as `"12.5"` or `"1200"`.
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        let text = amount.trim();
        let malformed = || MoneyError::Malformed(amount.to_owned());
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        if text.ends_with('.') {
            return Err(malformed());
        }
        if frac.len() > usize::from(currency.exponent) {
            return Err(MoneyError::TooPrecise { currency: currency.code, exponent: currency.exponent });
        }
        let scale = 10i64.checked_pow(u32::from(currency.exponent)).ok_or(MoneyError::Overflow)?;
        let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let mut frac_value: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| malformed())? };
        for _ in frac.len()..usize::from(currency.exponent) {
            frac_value *= 10;
        }
        let minor = whole.checked_mul(scale).and_then(|w| w.checked_add(frac_value)).ok_or(MoneyError::Overflow)?;
        Ok(Self { minor, currency })
    }

    /// The amount as a decimal string with exactly the currency's decimals.
    pub fn amount_string(&self) -> String {
        let exp = u32::from(self.currency.exponent);
        if exp == 0 {
            return self.minor.to_string();
        }
        let scale = 10i64.pow(exp);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        format!("{sign}{}.{:0width$}", abs / scale as u64, abs % scale as u64, width = exp as usize)
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(Money { minor: self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?, currency: self.currency })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(Money { minor: self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?, currency: self.currency })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency { Ok(()) } else { Err(MoneyError::CurrencyMismatch(self.currency.code, other.currency.code)) }
    }

    pub fn to_view(self) -> MoneyView {
        MoneyView { amount: self.amount_string(), currency: self.currency.code.to_owned() }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_string(), self.currency.code)
    }
}

/// Money as it travels in JSON: `{"amount": "12.50", "currency": "EUR"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyView {
    /// Decimal string, e.g. "12.50".
    pub amount: String,
    /// ISO 4217 code, e.g. "EUR".
    pub currency: String,
}

impl MoneyView {
    /// The view of a stored amount. A currency the platform no longer knows is shown as its
    /// raw minor units rather than failing the whole answer.
    pub fn from_minor(minor: i64, currency: &str) -> Self {
        match Currency::parse(currency) {
            Ok(c) => Money::new(minor, c).to_view(),
            Err(_) => MoneyView { amount: minor.to_string(), currency: currency.to_owned() },
        }
    }

    pub fn parse(&self) -> Result<Money, MoneyError> {
        Money::parse(&self.amount, Currency::parse(&self.currency)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("eur").unwrap()
    }

    #[test]
    fn parses_and_formats_minor_units() {
        assert_eq!(Money::parse("12.5", eur()).unwrap().minor, 1250);
        assert_eq!(Money::parse("12.05", eur()).unwrap().minor, 1205);
        assert_eq!(Money::parse("0", eur()).unwrap().minor, 0);
        assert_eq!(Money::parse("45000", eur()).unwrap().amount_string(), "45000.00");
        assert_eq!(Money::new(-5, eur()).amount_string(), "-0.05");
        let yen = Currency::parse("JPY").unwrap();
        assert_eq!(Money::parse("1200", yen).unwrap().amount_string(), "1200");
        assert!(Money::parse("1.5", yen).is_err());
    }

    #[test]
    fn refuses_what_is_not_an_amount() {
        for bad in ["", "-1", "1.", ".5", "1.234", "1e3", "12,50", " ", "NaN", "99999999999999999999"] {
            assert!(Money::parse(bad, eur()).is_err(), "{bad:?}");
        }
        // ISO 4217's code for "no currency" is not one the platform accepts.
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("EURO").is_err());
    }

    #[test]
    fn arithmetic_is_checked_and_single_currency() {
        let a = Money::new(i64::MAX, eur());
        assert_eq!(a.checked_add(Money::new(1, eur())), Err(MoneyError::Overflow));
        let usd = Currency::parse("USD").unwrap();
        assert!(Money::new(1, eur()).checked_add(Money::new(1, usd)).is_err());
    }
}
