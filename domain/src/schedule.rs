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
    /// "at 03:30, on Monday to Friday (UTC)". Read from croner's parsed pattern (the
    /// times it fires), never from the text again; patterns with `L`, `W` or `#` are
    /// described field by field.
    #[must_use]
    pub fn describe(&self) -> String {
        describe::describe(&self.cron.pattern, &self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Cron fields in words, from the values croner parsed.
///
/// croner 4's own `describe()` was tried and not used: it words `0-30/10 8-18 * * *`
/// as "every 10 minutes, of hour 8-18" (it runs at :00 to :30 only), lists `1-5` as five
/// day names and says nothing of UTC.
mod describe {
    use std::fmt::Write as _;

    use croner::{CronComponent, CronPattern};

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

    /// A field's values as people group them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Part {
        /// Every value of the field, or every `n`th from its first (`*`, `*/n`).
        Every(u32),
        /// One value, a run of values, or every `step`th value from `from` to `to`.
        Range { from: u32, to: u32, step: u32 },
    }

    /// The values of a field in `min..=max`, grouped: the whole field, a stepped
    /// progression (`0-30/10`), or runs of consecutive values (three or more make a
    /// range) and single values.
    fn parts(values: &[u16], min: u32, max: u32) -> Vec<Part> {
        let values: Vec<u32> = values.iter().map(|v| u32::from(*v)).collect();
        let (Some(&first), Some(&last)) = (values.first(), values.last()) else {
            return Vec::new();
        };
        // Two values read better as a list ("January and July") than as a step.
        if values.len() >= 3 {
            let step = values[1] - first;
            if values.windows(2).all(|w| w[1] - w[0] == step) {
                if first == min && last + step > max {
                    return vec![Part::Every(step)];
                }
                if step > 1 {
                    return vec![Part::Range {
                        from: first,
                        to: last,
                        step,
                    }];
                }
            }
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let mut j = i;
            while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
                j += 1;
            }
            if j >= i + 2 {
                out.push(Part::Range {
                    from: values[i],
                    to: values[j],
                    step: 1,
                });
            } else {
                out.extend(values[i..=j].iter().map(|&v| Part::Range {
                    from: v,
                    to: v,
                    step: 1,
                }));
            }
            i = j + 1;
        }
        out
    }

    fn field(component: &CronComponent) -> Vec<Part> {
        parts(
            &component.values(),
            u32::from(component.min),
            u32::from(component.max),
        )
    }

    /// Single values only (no steps, no ranges).
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
                Part::Range { from, to, .. } if from == to => name(from),
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

    pub(super) fn describe(pattern: &CronPattern, text: &str) -> String {
        if pattern.days.has_modifiers() || pattern.days_of_week.has_modifiers() {
            // `L`, `W` and `#` pick days that depend on the month: shown as written.
            let fields: Vec<&str> = text.split_whitespace().collect();
            if let [minute, hour, day_of_month, month, day_of_week] = fields[..] {
                return format!(
                    "minute {minute}, hour {hour}, day of month {day_of_month}, month {month}, day of week {day_of_week} (UTC)"
                );
            }
            return format!("{text} (UTC)");
        }
        let minute = field(&pattern.minutes);
        let hour = field(&pattern.hours);
        let dom = field(&pattern.days);
        let month = field(&pattern.months);
        let mut out = time_of_day(&minute, &hour);
        let any = |p: &[Part]| p == [Part::Every(1)];
        let weekdays = weekdays(&pattern.days_of_week.values());
        let every_weekday = weekdays == "every day";
        let days_of_month = if any(&dom) {
            "every day".to_owned()
        } else {
            format!(
                "on day {} of the month",
                list(&dom, &|d: u32| d.to_string(), "day")
            )
        };
        // As croner matches them: with a `+` on the day of week both day fields must
        // match; otherwise either does, and only a literal `*` (or `?`) stands aside.
        let days = match (pattern.is_dom_wildcard(), pattern.is_dow_wildcard()) {
            (true, true) => "every day".to_owned(),
            (true, false) => weekdays,
            (false, true) => days_of_month,
            (false, false) if pattern.matches_dom_and_dow() => {
                if any(&dom) {
                    weekdays
                } else if every_weekday {
                    days_of_month
                } else {
                    format!("{days_of_month} if it falls {weekdays}")
                }
            }
            // Either matches, as in every cron since Vixie's.
            (false, false) if any(&dom) || every_weekday => "every day".to_owned(),
            (false, false) => format!("{days_of_month} or {weekdays}"),
        };
        let _ = write!(out, ", {days}");
        if !any(&month) {
            let _ = write!(out, ", in {}", list(&month, &month_name, "month"));
        }
        out.push_str(" (UTC)");
        out
    }

    /// The days of the week that `values` (0 or 7 is Sunday) select, in words ("on
    /// Monday to Friday", "every day").
    fn weekdays(values: &[u16]) -> String {
        let mut days = [false; 7];
        for v in values {
            days[usize::from(*v % 7)] = true;
        }
        let chosen: Vec<usize> = (0..7).filter(|d| days[*d]).collect();
        match chosen.as_slice() {
            [0, 1, 2, 3, 4, 5, 6] => "every day".to_owned(),
            [1, 2, 3, 4, 5] => "on Monday to Friday".to_owned(),
            [0, 6] => "on Saturday and Sunday".to_owned(),
            _ => {
                // Monday first, as people read a week.
                let mut names: Vec<usize> = chosen.iter().map(|d| (d + 6) % 7).collect();
                names.sort_unstable();
                let names: Vec<String> = names
                    .into_iter()
                    .map(|d| DAYS[(d + 1) % 7].to_owned())
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
