//! Channels and the per-user preferences that pick them: an exact event type wins over the
//! user's `*` rule, which wins over the platform defaults (in-app and email).

use motorpool_platform::problem::FieldError;
use serde::{Deserialize, Serialize};

/// A way a notification reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Stored, listed and pushed live to open pages.
    InApp,
    Email,
    Webhook,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 5] = [Channel::InApp, Channel::Email, Channel::Webhook, Channel::Sms, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A set of channels, kept sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSet(Vec<Channel>);

impl ChannelSet {
    /// What a user gets until they say otherwise.
    pub fn defaults() -> Self {
        Self(vec![Channel::InApp, Channel::Email])
    }

    pub fn from_channels(channels: impl IntoIterator<Item = Channel>) -> Self {
        let mut v: Vec<Channel> = channels.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    /// Parses what a client sent; unknown names are field errors.
    pub fn parse(raw: &[String]) -> Result<Self, FieldError> {
        if raw.len() > 16 {
            return Err(FieldError { field: "channels".into(), message: "lists too many channels".into() });
        }
        let mut channels = Vec::with_capacity(raw.len());
        for name in raw {
            let channel = Channel::parse(name.trim()).ok_or_else(|| FieldError {
                field: "channels".into(),
                message: format!("unknown channel {name:?}; use {}", Channel::ALL.map(Channel::as_str).join(", ")),
            })?;
            channels.push(channel);
        }
        Ok(Self::from_channels(channels))
    }

    /// The stored form, `in_app,email`. Unknown names in stored text (a channel removed in a
    /// later version) are skipped rather than failing every read.
    pub fn to_stored(&self) -> String {
        self.0.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
    }

    pub fn from_stored(s: &str) -> Self {
        Self::from_channels(s.split(',').filter_map(|c| Channel::parse(c.trim())))
    }

    pub fn contains(&self, channel: Channel) -> bool {
        self.0.contains(&channel)
    }

    pub fn iter(&self) -> impl Iterator<Item = Channel> + '_ {
        self.0.iter().copied()
    }

    pub fn to_vec(&self) -> Vec<Channel> {
        self.0.clone()
    }
}

/// What a preference applies to: one event type, or every event (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSelector(String);

pub const ANY_EVENT: &str = "*";

impl EventSelector {
    /// `*` or an event type `<service>.<entity>.<verb>.v<N>` (lower-case words, digits, `_`).
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        let bad =
            || FieldError { field: "eventType".into(), message: "must be \"*\" or an event type like payments.charge.succeeded.v1".into() };
        if s == ANY_EVENT {
            return Ok(Self(s.to_owned()));
        }
        if s.len() > 128 {
            return Err(bad());
        }
        let parts: Vec<&str> = s.split('.').collect();
        let Some((version, words)) = parts.split_last() else { return Err(bad()) };
        let version_ok = version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        let words_ok = words.len() >= 3
            && words.iter().all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        if version_ok && words_ok { Ok(Self(s.to_owned())) } else { Err(bad()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The channels for `event_type` given a user's stored rules `(selector, channels)`.
pub fn channels_for(event_type: &str, rules: &[(String, ChannelSet)]) -> ChannelSet {
    let exact = rules.iter().find(|(selector, _)| selector == event_type);
    let any = || rules.iter().find(|(selector, _)| selector == ANY_EVENT);
    exact.or_else(any).map(|(_, channels)| channels.clone()).unwrap_or_else(ChannelSet::defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> ChannelSet {
        ChannelSet::parse(&names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_rule_beats_wildcard_beats_defaults() {
        let rules = vec![("*".to_owned(), set(&["in_app"])), ("payments.charge.succeeded.v1".to_owned(), set(&["webhook", "in_app"]))];
        assert_eq!(channels_for("payments.charge.succeeded.v1", &rules), set(&["in_app", "webhook"]));
        assert_eq!(channels_for("payments.charge.failed.v1", &rules), set(&["in_app"]));
        assert_eq!(channels_for("payments.charge.failed.v1", &[]), ChannelSet::defaults());
    }

    #[test]
    fn channel_sets_are_sorted_deduplicated_and_round_trip() {
        let s = set(&["webhook", "in_app", "webhook", "email"]);
        assert_eq!(s.to_stored(), "in_app,email,webhook");
        assert_eq!(ChannelSet::from_stored(&s.to_stored()), s);
        assert_eq!(ChannelSet::from_stored("in_app,fax"), set(&["in_app"]));
        assert!(ChannelSet::parse(&["carrier_pigeon".to_owned()]).is_err());
        assert_eq!(set(&[]).to_stored(), "");
    }

    #[test]
    fn selectors_are_a_wildcard_or_a_versioned_event_type() {
        for ok in ["*", "payments.charge.succeeded.v1", "identity.user.registered.v12", "a.b_c.d.v1"] {
            assert!(EventSelector::parse(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "**", "payments", "payments.charge.v1", "payments.charge.succeeded", "Payments.charge.succeeded.v1", "a..b.v1", "a.b.c.vx"]
        {
            assert!(EventSelector::parse(bad).is_err(), "{bad}");
        }
    }
}
