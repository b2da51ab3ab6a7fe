//! Backup schedules: standard five-field cron expressions (minute hour day-of-month month
//! day-of-week), evaluated in UTC.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};

/// A parsed, valid schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

/// A schedule that could not be parsed; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule `{text}`: {reason}")]
pub struct InvalidSchedule {
    pub text: String,
    pub reason: String,
}

impl Schedule {
    /// Parses a five-field cron expression (`"0 3 * * *"` is 03:00 UTC every day).
    ///
    /// # Errors
    /// `InvalidSchedule` for anything else, including six-field (seconds) patterns.
    pub fn parse(text: &str) -> Result<Self, InvalidSchedule> {
        let text = text.trim();
        let invalid = |reason: String| InvalidSchedule {
            text: text.to_owned(),
            reason,
        };
        if text.split_whitespace().count() != 5 {
            return Err(invalid(
                "expected five fields: minute hour day-of-month month day-of-week".into(),
            ));
        }
        let cron = croner::Cron::from_str(text).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            text: text.to_owned(),
            cron,
        })
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `now` that the schedule fires.
    #[must_use]
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&now, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_five_fields_and_finds_the_next_run() {
        let s = Schedule::parse(" 0 3 * * * ").unwrap();
        assert_eq!(s.as_str(), "0 3 * * *");
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap();
        assert_eq!(
            s.next_after(now),
            Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn refuses_garbage_and_other_shapes() {
        for bad in [
            "",
            "daily",
            "61 * * * *",
            "* * * *",
            "0 0 3 * * *",
            "* * 32 * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
