//! Cron schedules of periodic jobs (`spec.schedule`), as Kubernetes CronJobs write them:
//! five fields (minute, hour, day of month, month, day of week; names such as `MON` and
//! `JAN`, ranges, lists, steps) or a macro (`@hourly`, `@daily`, `@weekly`, `@monthly`,
//! `@yearly`), in UTC. Parsing and evaluation are croner's (POSIX/Vixie semantics); this
//! module refuses the sixth (seconds) field Kubernetes does not have, and takes and gives
//! times as Unix seconds so callers bring their own clock.

use std::str::FromStr;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule(croner::Cron);

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        if !text.starts_with('@') && text.split_whitespace().count() != 5 {
            return Err(format!(
                "{s:?} is not a cron schedule: five fields (minute hour day-of-month month day-of-week, e.g. \"*/15 * * * *\") or @hourly/@daily/@weekly/@monthly/@yearly"
            ));
        }
        croner::Cron::from_str(text)
            .map(Schedule)
            .map_err(|e| format!("{s:?} is not a cron schedule: {e}"))
    }
}

impl Schedule {
    /// The latest time at or before `unix_secs` that the schedule fired, in Unix seconds.
    pub fn last_at_or_before(&self, unix_secs: i64) -> Option<i64> {
        let at = chrono::DateTime::from_timestamp(unix_secs, 0)?;
        self.0
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The first time strictly after `unix_secs` that the schedule fires, in Unix seconds.
    pub fn next_after(&self, unix_secs: i64) -> Option<i64> {
        let at = chrono::DateTime::from_timestamp(unix_secs, 0)?;
        self.0
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_and_macros_in_utc() {
        // 2026-12-06T10:02:00Z
        let t = 1_796_551_320;
        let every5: Schedule = "*/5 * * * *".parse().unwrap();
        assert_eq!(every5.next_after(t), Some(t + 180));
        let hourly: Schedule = "@hourly".parse().unwrap();
        assert_eq!(hourly.next_after(t), Some(t + 58 * 60));
        let sunday: Schedule = "0 0 * * SUN".parse().unwrap();
        assert!(sunday.next_after(t).unwrap() > t);
        assert_eq!(every5.last_at_or_before(t), Some(t - 120));
        assert_eq!(every5.last_at_or_before(t - 120), Some(t - 120));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for bad in ["* * * * * *", "* * *", "61 * * * *", "0 0 * * FUNDAY", ""] {
            let e = bad.parse::<Schedule>().unwrap_err();
            assert!(e.contains("is not a cron schedule"), "{bad}: {e}");
        }
    }
}
