//! `[scheduler]`: scheduled runs inside the server.

use coffer_domain::schedule::Schedule;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Scheduled backups (each source's own cron schedule), prunes and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Run schedules inside `coffer serve`. Off: nothing runs by itself.
    pub enabled: bool,
    /// A run missed while the server was down starts once when it is back (never once per
    /// missed occurrence). Off: missed runs are skipped.
    pub catch_up: bool,
    /// Five-field cron expression (UTC) for garbage collection. Empty: never.
    pub prune_schedule: String,
    /// Five-field cron expression (UTC) for the repository check. Empty: never.
    pub check_schedule: String,
    /// Share of the stored data each scheduled check re-reads, 1 to 100; every byte is
    /// re-read once every `100 / share` checks.
    pub check_share_percent: u8,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            catch_up: true,
            prune_schedule: "30 3 * * *".to_owned(),
            check_schedule: "0 4 * * 0".to_owned(),
            check_share_percent: 10,
        }
    }
}

impl SchedulerSettings {
    /// The prune schedule, `None` when empty.
    ///
    /// # Errors
    /// An invalid cron expression, with the key named.
    pub fn prune(&self) -> Result<Option<Schedule>, ConfigError> {
        parse("scheduler.prune_schedule", &self.prune_schedule)
    }

    /// The check schedule, `None` when empty.
    ///
    /// # Errors
    /// An invalid cron expression, with the key named.
    pub fn check(&self) -> Result<Option<Schedule>, ConfigError> {
        parse("scheduler.check_schedule", &self.check_schedule)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.prune()?;
        self.check()?;
        if !(1..=100).contains(&self.check_share_percent) {
            return Err(ConfigError::Invalid(
                "`scheduler.check_share_percent` must be between 1 and 100".to_owned(),
            ));
        }
        Ok(())
    }
}

fn parse(key: &str, text: &str) -> Result<Option<Schedule>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    Schedule::parse(text).map(Some).map_err(|e| {
        ConfigError::Invalid(format!(
            "`{key}` {e} (five fields in UTC, e.g. \"30 3 * * *\"; empty to turn it off)"
        ))
    })
}

#[cfg(test)]
mod tests {
    // figment::Jail closures must return figment::Error, which is large; fine in tests.
    #![allow(clippy::result_large_err)]

    use std::path::Path;

    use figment::Jail;

    use crate::Settings;

    fn load(jail: &mut Jail, toml: &str) -> Result<Settings, String> {
        jail.create_file("s.toml", toml)
            .map_err(|e| e.to_string())?;
        Settings::load(Some(Path::new("s.toml"))).map_err(|e| e.to_string())
    }

    #[test]
    fn schedules_are_checked_at_load_with_the_key_named() {
        Jail::expect_with(|jail| {
            let err = load(jail, "[scheduler]\nprune_schedule = \"every night\"\n").unwrap_err();
            assert!(err.contains("scheduler.prune_schedule"), "{err}");
            assert!(err.contains("five fields"), "{err}");
            let err = load(jail, "[scheduler]\ncheck_schedule = \"61 * * * *\"\n").unwrap_err();
            assert!(err.contains("scheduler.check_schedule"), "{err}");
            for share in ["0", "101"] {
                let err = load(
                    jail,
                    &format!("[scheduler]\ncheck_share_percent = {share}\n"),
                )
                .unwrap_err();
                assert!(err.contains("scheduler.check_share_percent"), "{err}");
            }
            Ok(())
        });
    }

    #[test]
    fn an_empty_schedule_turns_a_task_off() {
        Jail::expect_with(|jail| {
            let s = load(
                jail,
                "[scheduler]\nprune_schedule = \"\"\ncheck_schedule = \" 15 2 * * 1 \"\n\
                 check_share_percent = 100\ncatch_up = false\n",
            )?;
            assert!(s.scheduler.prune().map_err(|e| e.to_string())?.is_none());
            let check = s.scheduler.check().map_err(|e| e.to_string())?;
            assert_eq!(
                check.map(|c| c.as_str().to_owned()).as_deref(),
                Some("15 2 * * 1")
            );
            assert!(!s.scheduler.catch_up);
            Ok(())
        });
    }

    #[test]
    fn defaults_are_valid_and_overridable_from_the_environment() {
        Jail::expect_with(|jail| {
            let d = Settings::load(None).map_err(|e| e.to_string())?.scheduler;
            assert!(d.enabled && d.catch_up);
            assert_eq!(
                d.prune()
                    .map_err(|e| e.to_string())?
                    .map(|p| p.as_str().to_owned()),
                Some("30 3 * * *".to_owned())
            );
            assert_eq!(d.check_share_percent, 10);
            jail.set_env("COFFER_SCHEDULER__ENABLED", "false");
            jail.set_env("COFFER_SCHEDULER__PRUNE_SCHEDULE", "");
            let s = Settings::load(None).map_err(|e| e.to_string())?.scheduler;
            assert!(!s.enabled);
            assert!(s.prune().map_err(|e| e.to_string())?.is_none());
            Ok(())
        });
    }
}
