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

    /// The next `n` times after `now` that the schedule fires.
    #[must_use]
    pub fn next_runs(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = now;
        while out.len() < n {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next);
            at = next;
        }
        out
    }

    /// The schedule in words, for people checking what they typed: `"30 3 * * 1-5"` is
    /// "at 03:30, Monday to Friday (UTC)". Forms beyond plain numbers, names, ranges,
    /// lists and steps (`L`, `W`, `#`) are described field by field.
    #[must_use]
    pub fn describe(&self) -> String {
        describe::describe(&self.text)
    }
}

/// Cron fields in words.
mod describe {
    use std::fmt::Write as _;

    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];

    /// One comma-separated part of a field.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Part {
        /// `*`, or `*/n` with a step above 1.
        Every(u32),
        /// `a`, `a-b`, `a-b/n`, `a/n` (to the field's end).
        Range { from: u32, to: u32, step: u32 },
    }

    /// A field as parts, or `None` for forms described verbatim.
    fn parse(field: &str, min: u32, max: u32, names: &[&str]) -> Option<Vec<Part>> {
        field
            .split(',')
            .map(|item| {
                let (base, step) = match item.split_once('/') {
                    Some((b, s)) => (b, s.parse::<u32>().ok().filter(|s| *s > 0)?),
                    None => (item, 1),
                };
                if base == "*" || base == "?" {
                    return Some(Part::Every(step));
                }
                let value = |t: &str| -> Option<u32> {
                    t.parse::<u32>().ok().or_else(|| {
                        names
                            .iter()
                            .position(|n| n[..3].eq_ignore_ascii_case(t))
                            .and_then(|i| u32::try_from(i).ok())
                            .map(|i| i + min)
                    })
                };
                let (from, to) = if let Some((a, b)) = base.split_once('-') {
                    (value(a)?, value(b)?)
                } else {
                    let a = value(base)?;
                    (a, if step > 1 { max } else { a })
                };
                (from <= to).then_some(Part::Range { from, to, step })
            })
            .collect()
    }

    /// Single values only (no steps, no ranges wider than one).
    fn singles(parts: &[Part]) -> Option<Vec<u32>> {
        parts
            .iter()
            .map(|p| match *p {
                Part::Range { from, to, .. } if from == to => Some(from),
                _ => None,
            })
            .collect()
    }

    fn join(items: &[String]) -> String {
        match items {
            [] => String::new(),
            [one] => one.clone(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
        }
    }

    fn ordinal(n: u32) -> String {
        let suffix = match (n % 10, n % 100) {
            (1, 11) | (2, 12) | (3, 13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        format!("{n}{suffix}")
    }

    /// `parts` as words, `name` turning a value into a word.
    fn list(parts: &[Part], name: &dyn Fn(u32) -> String, unit: &str) -> String {
        let items: Vec<String> = parts
            .iter()
            .map(|p| match *p {
                Part::Every(1) => format!("every {unit}"),
                Part::Every(n) => format!("every {} {unit}", ordinal(n)),
                Part::Range { from, to, step }
                    if from == to || (step > 1 && from.saturating_add(step) > to) =>
                {
                    name(from)
                }
                Part::Range { from, to, step: 1 } => format!("{} to {}", name(from), name(to)),
                Part::Range { from, to, step } => {
                    format!(
                        "every {} {unit} from {} to {}",
                        ordinal(step),
                        name(from),
                        name(to)
                    )
                }
            })
            .collect();
        join(&items)
    }

    fn day_name(d: u32) -> String {
        DAYS[(d % 7) as usize].to_owned()
    }

    fn month_name(m: u32) -> String {
        MONTHS
            .get(m.wrapping_sub(1) as usize)
            .map_or_else(|| m.to_string(), |s| (*s).to_owned())
    }

    fn time_of_day(minute: &[Part], hour: &[Part]) -> String {
        let minutes = singles(minute);
        let hours = singles(hour);
        match (minutes.as_deref(), hours.as_deref(), hour) {
            (Some(ms), Some(hs), _) if ms.len() * hs.len() <= 6 => {
                let mut times = Vec::new();
                for h in hs {
                    for m in ms {
                        times.push(format!("{h:02}:{m:02}"));
                    }
                }
                format!("at {}", join(&times))
            }
            (Some([0]), None, [Part::Every(1)]) => "every hour, on the hour".to_owned(),
            (Some([m]), None, [Part::Every(1)]) => format!("every hour at minute {m}"),
            (Some([0]), None, [Part::Every(n)]) => format!("every {n} hours, on the hour"),
            (Some([m]), None, [Part::Every(n)]) => format!("every {n} hours at minute {m}"),
            (None, _, [Part::Every(1)]) if minute == [Part::Every(1)] => "every minute".to_owned(),
            (None, _, [Part::Every(1)]) if matches!(minute, [Part::Every(_)]) => {
                let [Part::Every(n)] = minute else {
                    unreachable!("matched above")
                };
                format!("every {n} minutes")
            }
            _ => {
                let num = |v: u32| v.to_string();
                let mut s = format!("at minute {}", list(minute, &num, "minute"));
                if hour != [Part::Every(1)] {
                    let _ = write!(s, " past hour {}", list(hour, &num, "hour"));
                }
                s
            }
        }
    }

    pub(super) fn describe(text: &str) -> String {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day_of_month_text, month, weekday_text] = fields[..] else {
            return text.to_owned();
        };
        // As croner reads them: a leading `+` on the day of week asks for both day
        // fields to match; otherwise either does, and only a literal `*` (or `?`) field
        // stands aside.
        let both = weekday_text.starts_with('+');
        let weekday_text = weekday_text.trim_start_matches('+');
        let parsed = (
            parse(minute, 0, 59, &[]),
            parse(hour, 0, 23, &[]),
            parse(day_of_month_text, 1, 31, &[]),
            parse(month, 1, 12, &MONTHS),
            parse(weekday_text, 0, 7, &DAYS),
        );
        let (Some(minute), Some(hour), Some(dom), Some(month), Some(dow)) = parsed else {
            return format!(
                "minute {minute}, hour {hour}, day of month {day_of_month_text}, month {month}, day of week {} (UTC)",
                fields[4]
            );
        };
        let mut out = time_of_day(&minute, &hour);
        let any = |p: &[Part]| p == [Part::Every(1)];
        let wildcard = |t: &str| t == "*" || t == "?";
        let weekdays = weekdays(&dow);
        let days_of_month = if any(&dom) {
            "every day".to_owned()
        } else {
            format!(
                "on day {} of the month",
                list(&dom, &|d: u32| d.to_string(), "day")
            )
        };
        let days = match (wildcard(day_of_month_text), wildcard(weekday_text)) {
            (true, true) => "every day".to_owned(),
            (true, false) => weekdays,
            (false, true) => days_of_month,
            (false, false) if both => {
                if any(&dom) {
                    weekdays
                } else if any(&dow) {
                    days_of_month
                } else {
                    format!("{days_of_month} if it falls {weekdays}")
                }
            }
            // Either matches, as in every cron since Vixie's.
            (false, false) if any(&dom) || any(&dow) => "every day".to_owned(),
            (false, false) => format!("{days_of_month} or {weekdays}"),
        };
        let _ = write!(out, ", {days}");
        if !any(&month) {
            let _ = write!(out, ", in {}", list(&month, &month_name, "month"));
        }
        out.push_str(" (UTC)");
        out
    }

    /// The days of the week a field selects, in words ("on Monday to Friday", "every
    /// day"); steps are spelled out as the days they select.
    fn weekdays(dow: &[Part]) -> String {
        let mut days = [false; 7];
        for p in dow {
            let (from, to, step) = match *p {
                Part::Every(n) => (0, 6, n),
                Part::Range { from, to, step } => (from, to, step),
            };
            let mut d = from;
            while d <= to {
                days[(d % 7) as usize] = true;
                d = d.saturating_add(step.max(1));
            }
        }
        let chosen: Vec<u32> = (0..7u32).filter(|d| days[*d as usize]).collect();
        match chosen.as_slice() {
            [0, 1, 2, 3, 4, 5, 6] => "every day".to_owned(),
            [1, 2, 3, 4, 5] => "on Monday to Friday".to_owned(),
            [0, 6] => "on Saturday and Sunday".to_owned(),
            _ => {
                let names: Vec<String> = chosen
                    .iter()
                    // Monday first, as people read a week.
                    .map(|d| (d + 6) % 7)
                    .collect::<std::collections::BTreeSet<u32>>()
                    .into_iter()
                    .map(|d| day_name(d + 1))
                    .collect();
                format!("on {}", join(&names))
            }
        }
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
    fn describes_schedules_in_words() {
        for (cron, words) in [
            ("30 3 * * *", "at 03:30, every day (UTC)"),
            ("0 4 * * 0", "at 04:00, on Sunday (UTC)"),
            ("30 3 * * 1-5", "at 03:30, on Monday to Friday (UTC)"),
            (
                "0 9,17 * * mon,wed",
                "at 09:00 and 17:00, on Monday and Wednesday (UTC)",
            ),
            ("0 * * * *", "every hour, on the hour, every day (UTC)"),
            (
                "15 */6 * * *",
                "every 6 hours at minute 15, every day (UTC)",
            ),
            ("*/10 * * * *", "every 10 minutes, every day (UTC)"),
            ("* * * * *", "every minute, every day (UTC)"),
            ("0 2 1 * *", "at 02:00, on day 1 of the month (UTC)"),
            (
                "0 2 1,15 1-6 *",
                "at 02:00, on day 1 and 15 of the month, in January to June (UTC)",
            ),
            (
                "0 2 1 * 1",
                "at 02:00, on day 1 of the month or on Monday (UTC)",
            ),
            (
                "5 1 * jan,jul *",
                "at 01:05, every day, in January and July (UTC)",
            ),
            ("0 0 * * 7", "at 00:00, on Sunday (UTC)"),
            (
                "0 2 1 * +1",
                "at 02:00, on day 1 of the month if it falls on Monday (UTC)",
            ),
            ("0 2 */1 * 1", "at 02:00, every day (UTC)"),
            (
                "0 0 * * */2",
                "at 00:00, on Tuesday, Thursday, Saturday and Sunday (UTC)",
            ),
            ("0 0 * * 6,0", "at 00:00, on Saturday and Sunday (UTC)"),
            ("0 0 ? * ?", "at 00:00, every day (UTC)"),
            (
                "0 0 * * 1,3,5",
                "at 00:00, on Monday, Wednesday and Friday (UTC)",
            ),
            (
                "0-30/10 8-18 * * *",
                "at minute every 10th minute from 0 to 30 past hour 8 to 18, every day (UTC)",
            ),
            (
                "0 0 L * *",
                "minute 0, hour 0, day of month L, month *, day of week * (UTC)",
            ),
        ] {
            let s = Schedule::parse(cron).unwrap_or_else(|e| panic!("{cron}: {e}"));
            assert_eq!(s.describe(), words, "{cron}");
        }
    }

    #[test]
    fn every_valid_expression_is_described() {
        let minutes = ["0", "*", "*/15", "5-50/5", "0,30", "59"];
        let hours = ["0", "*", "*/6", "9-17", "1,13", "23"];
        let doms = ["*", "1", "L", "1-15", "*/2", "?"];
        let months = ["*", "1", "jan-jun", "*/3", "dec"];
        let weekdays = ["*", "0", "1-5", "sat,sun", "MON", "5#2", "7"];
        let mut described = 0;
        for m in minutes {
            for h in hours {
                for d in doms {
                    for mo in months {
                        for w in weekdays {
                            let text = format!("{m} {h} {d} {mo} {w}");
                            if let Ok(s) = Schedule::parse(&text) {
                                let words = s.describe();
                                assert!(words.ends_with("(UTC)"), "{text}: {words}");
                                described += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(described > 5000, "{described}");
    }

    #[test]
    fn the_described_days_are_the_days_it_runs() {
        use chrono::Datelike as _;
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        // "+1": the 1st only when it is a Monday (2027-02-01, 2027-03-01 are Mondays).
        let and = Schedule::parse("0 2 1 * +1").unwrap().next_runs(now, 2);
        assert_eq!(and.len(), 2);
        assert!(
            and.iter()
                .all(|t| t.day() == 1 && t.weekday() == chrono::Weekday::Mon),
            "{and:?}"
        );
        // "*/1" is not a wildcard to croner: either field matching means every day.
        let every = Schedule::parse("0 2 */1 * 1").unwrap().next_runs(now, 7);
        assert_eq!(every.len(), 7);
        assert!(
            every.windows(2).all(|w| (w[1] - w[0]).num_hours() == 24),
            "{every:?}"
        );
        // Steps over weekdays run on the days the words name.
        let stepped = Schedule::parse("0 0 * * */2").unwrap().next_runs(now, 8);
        let mut names: Vec<String> = stepped.iter().map(|t| t.weekday().to_string()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["Sat", "Sun", "Thu", "Tue"]);
    }

    #[test]
    fn day_of_month_and_day_of_week_are_either_as_described() {
        // "day 1 of the month or on Monday": the runs include Mondays that are not the 1st.
        let s = Schedule::parse("0 2 1 * 1").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
        let runs = s.next_runs(now, 5);
        assert_eq!(runs.len(), 5);
        assert_eq!(
            runs[0],
            Utc.with_ymd_and_hms(2026, 11, 30, 2, 0, 0).unwrap(),
            "a Monday"
        );
        assert_eq!(
            runs[1],
            Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap(),
            "the 1st"
        );
        assert!(runs.windows(2).all(|w| w[0] < w[1]));
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
