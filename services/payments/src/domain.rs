//! The rules of money, free of I/O: which accounts a movement touches and by how much (every
//! posting balances to zero), how a charge's status follows from its amounts, and what a
//! valid card number is.

use motorpool_platform::money::{Currency, Money};

/// Kinds of ledger accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A user's spendable money.
    Wallet,
    /// A user's money held by authorisations.
    Held,
    /// Money that came in from the card processor (goes negative as users top up).
    CardClearing,
    /// Money the platform has captured.
    Revenue,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::Held => "held",
            AccountKind::CardClearing => "card_clearing",
            AccountKind::Revenue => "revenue",
        }
    }

    /// User accounts keep a balance that may not go below zero; system accounts do not.
    pub fn is_tracked(self) -> bool {
        matches!(self, AccountKind::Wallet | AccountKind::Held)
    }
}

pub const PLATFORM: &str = "platform";

pub fn account_id(kind: AccountKind, owner: &str, currency: Currency) -> String {
    format!("{}:{}:{}", kind.as_str(), owner, currency.code())
}

/// One line of a posting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub account: String,
    pub kind: AccountKind,
    pub amount: i64,
}

/// What a transaction does to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    TopUp,
    Authorization,
    Capture,
    Void,
    Charge,
    Refund,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::TopUp => "top_up",
            TxKind::Authorization => "authorization",
            TxKind::Capture => "capture",
            TxKind::Void => "void",
            TxKind::Charge => "charge",
            TxKind::Refund => "refund",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub kind: TxKind,
    pub legs: Vec<Leg>,
}

impl Posting {
    fn new(kind: TxKind, currency: Currency, user: &str, lines: &[(AccountKind, i64)]) -> Self {
        let legs = lines
            .iter()
            .filter(|(_, amount)| *amount != 0)
            .map(|(k, amount)| {
                let owner = if k.is_tracked() { user } else { PLATFORM };
                Leg { account: account_id(*k, owner, currency), kind: *k, amount: *amount }
            })
            .collect();
        Self { kind, legs }
    }

    pub fn is_balanced(&self) -> bool {
        self.legs.iter().map(|l| i128::from(l.amount)).sum::<i128>() == 0
    }
}

pub fn top_up(user: &str, m: Money) -> Posting {
    Posting::new(TxKind::TopUp, m.currency, user, &[(AccountKind::CardClearing, -m.minor), (AccountKind::Wallet, m.minor)])
}

pub fn authorize(user: &str, m: Money) -> Posting {
    Posting::new(TxKind::Authorization, m.currency, user, &[(AccountKind::Wallet, -m.minor), (AccountKind::Held, m.minor)])
}

/// Captures `amount` of an authorisation of `authorized`; the rest returns to the wallet.
pub fn capture(user: &str, currency: Currency, authorized: i64, amount: i64) -> Posting {
    Posting::new(
        TxKind::Capture,
        currency,
        user,
        &[(AccountKind::Held, -authorized), (AccountKind::Revenue, amount), (AccountKind::Wallet, authorized - amount)],
    )
}

pub fn void(user: &str, currency: Currency, authorized: i64) -> Posting {
    Posting::new(TxKind::Void, currency, user, &[(AccountKind::Held, -authorized), (AccountKind::Wallet, authorized)])
}

pub fn charge(user: &str, m: Money) -> Posting {
    Posting::new(TxKind::Charge, m.currency, user, &[(AccountKind::Wallet, -m.minor), (AccountKind::Revenue, m.minor)])
}

pub fn refund(user: &str, m: Money) -> Posting {
    Posting::new(TxKind::Refund, m.currency, user, &[(AccountKind::Revenue, -m.minor), (AccountKind::Wallet, m.minor)])
}

/// A card number that passes the Luhn check. Only its last four digits are ever stored.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(raw: &str) -> Option<Self> {
        let digits: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let sum: u32 = digits
            .bytes()
            .rev()
            .enumerate()
            .map(|(i, b)| {
                let d = u32::from(b - b'0');
                if i % 2 == 1 {
                    let dd = d * 2;
                    if dd > 9 { dd - 9 } else { dd }
                } else {
                    d
                }
            })
            .sum();
        sum.is_multiple_of(10).then_some(Self(digits))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber(**** {})", self.last4())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").unwrap())
    }

    #[test]
    fn every_posting_balances_for_any_amounts() {
        let c = Currency::parse("EUR").unwrap();
        for a in [1, 7, 999, 123_456_789] {
            for p in [top_up("u", eur(a)), authorize("u", eur(a)), charge("u", eur(a)), refund("u", eur(a)), void("u", c, a)] {
                assert!(p.is_balanced(), "{p:?}");
            }
            for captured in [0, 1, a / 2, a] {
                let p = capture("u", c, a, captured);
                assert!(p.is_balanced(), "{p:?}");
                assert!(p.legs.iter().all(|l| l.amount != 0), "zero legs are dropped");
            }
        }
    }

    #[test]
    fn user_accounts_belong_to_the_user_and_system_accounts_to_the_platform() {
        let p = charge("ann", eur(500));
        assert_eq!(p.legs[0].account, "wallet:ann:EUR");
        assert_eq!(p.legs[1].account, "revenue:platform:EUR");
    }

    #[test]
    fn luhn_accepts_test_cards_and_refuses_typos() {
        assert!(CardNumber::parse("4242 4242 4242 4242").is_some());
        assert!(CardNumber::parse("4000-0000-0000-0002").is_some());
        assert!(CardNumber::parse("4242424242424241").is_none());
        assert!(CardNumber::parse("42").is_none());
        assert!(CardNumber::parse("4242x24242424242").is_none());
        assert_eq!(format!("{:?}", CardNumber::parse("4242424242424242").unwrap()), "CardNumber(**** 4242)");
    }
}
