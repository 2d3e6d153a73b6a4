//! Ignitor schedules: `NOW`, an RFC 3339 time, or cron (5, 6 or 7 fields, or `@hourly`-style
//! macros) in an optional time zone. Pure: every function takes the time it reasons about.
//!
//! Cron fields follow Orca's library (cronexpr): 5 fields are `min hour dom mon dow`; 6 fields
//! add a year at the end; 7 fields are `sec min hour dom mon dow year`. Day-of-week numbers
//! run 0-7 with both 0 and 7 meaning Sunday; names (`MON`) work too. `L`, `W` and `#` are not
//! supported and are refused with a clear error.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

use crate::wire::Timestamp;

/// When an ignitor fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Once, as soon as the ignitor is registered.
    Now,
    /// Once, at this time.
    At(Timestamp),
    /// At every match of a cron expression in a time zone.
    Cron {
        /// The parsed expression, in the 7-field form the `cron` crate reads.
        schedule: Box<cron::Schedule>,
        /// The time zone its fields are read in (UTC by default).
        zone: chrono_tz::Tz,
    },
}

impl Schedule {
    /// Parses `scheduled` (and `time_zone`) as applied at `now`: an RFC 3339 time that is not
    /// after it is an error, not a silent no-op, and so is a cron expression that never
    /// matches again.
    pub fn parse(
        scheduled: &str,
        time_zone: Option<&str>,
        now: Timestamp,
    ) -> Result<Schedule, String> {
        let schedule = Schedule::read(scheduled, time_zone)?;
        match &schedule {
            Schedule::At(at) if *at <= now => Err(format!(
                "{} is in the past: a one-shot schedule must be in the future (or NOW)",
                scheduled.trim()
            )),
            Schedule::Cron { .. } if schedule.next_after(now).is_none() => Err(format!(
                "the cron expression {:?} never matches after now",
                scheduled.trim()
            )),
            _ => Ok(schedule),
        }
    }

    /// Parses `scheduled` (and `time_zone`) without regard to the time: how the planner reads
    /// a schedule it accepted earlier.
    pub fn read(scheduled: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        let text = scheduled.trim();
        let zone = match time_zone {
            None => chrono_tz::UTC,
            Some(name) => chrono_tz::Tz::from_str(name).map_err(|_| {
                format!("unknown time zone {name:?} (use an IANA name like Europe/Rome)")
            })?,
        };
        if text.eq_ignore_ascii_case("now") {
            return Ok(Schedule::Now);
        }
        if let Ok(at) = humantime::parse_rfc3339_weak(text)
            && text.contains('T')
        {
            let millis = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| "a time before 1970".to_owned())?
                .as_millis();
            return Ok(Schedule::At(Timestamp(
                u64::try_from(millis).unwrap_or(u64::MAX),
            )));
        }
        let expression = cron_expression(text)?;
        let schedule = cron::Schedule::from_str(&expression)
            .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
        Ok(Schedule::Cron {
            schedule: Box::new(schedule),
            zone,
        })
    }

    /// Returns the first fire strictly after `after`; `None` for a one-shot that is done or a
    /// cron expression with no match left.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Now => None,
            Schedule::At(at) => (*at > after).then_some(*at),
            Schedule::Cron { schedule, zone } => {
                let after = zone.from_utc_datetime(&to_utc(after)?.naive_utc());
                let next = schedule.after(&after).next()?;
                Some(Timestamp(
                    u64::try_from(next.with_timezone(&Utc).timestamp_millis()).ok()?,
                ))
            }
        }
    }

    /// Returns the latest fire at or before `until` and after `since`, if any: the one fire a
    /// missed stretch of a cron schedule catches up with.
    pub fn latest_between(&self, since: Timestamp, until: Timestamp) -> Option<Timestamp> {
        let mut latest = None;
        let mut cursor = since;
        // Bounded: a schedule firing every second over a day is 86,400 steps.
        for _ in 0..100_000 {
            match self.next_after(cursor) {
                Some(t) if t <= until => {
                    latest = Some(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        latest
    }

    /// Returns whether this schedule fires only once.
    pub fn is_one_shot(&self) -> bool {
        !matches!(self, Schedule::Cron { .. })
    }
}

fn to_utc(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(t.0).ok()?)
}

/// Turns an Orca cron expression into the 7-field form of the `cron` crate.
fn cron_expression(text: &str) -> Result<String, String> {
    if let Some(rest) = text.strip_prefix('@') {
        let macro_ = match rest.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "@yearly",
            "monthly" => "@monthly",
            "weekly" => "@weekly",
            "daily" | "midnight" => "@daily",
            "hourly" => "@hourly",
            other => {
                return Err(format!(
                    "unknown schedule macro @{other} (known: @yearly, @annually, @monthly, @weekly, @daily, @hourly)"
                ));
            }
        };
        return Ok(macro_.to_owned());
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let (second, rest, year) = match fields.len() {
        5 => ("0", &fields[..], "*"),
        6 => ("0", &fields[..5], fields[5]),
        7 => (fields[0], &fields[1..6], fields[6]),
        n => {
            return Err(format!(
                "{text:?} is not NOW, an RFC 3339 time, or a cron expression (5, 6 or 7 fields, or @hourly); it has {n} fields"
            ));
        }
    };
    for field in fields.iter() {
        let unsupported = field.split([',', '-', '/']).any(|token| {
            let upper = token.to_ascii_uppercase();
            upper.contains('#')
                || upper == "L"
                || upper == "LW"
                || (upper.chars().any(|c| c.is_ascii_digit())
                    && (upper.ends_with('L') || upper.ends_with('W')))
        });
        if unsupported {
            return Err(format!(
                "cron field {field:?}: L, W and # are not supported"
            ));
        }
    }
    let dow = day_of_week(rest[4])?;
    Ok(format!(
        "{second} {} {} {} {} {dow} {year}",
        rest[0], rest[1], rest[2], rest[3]
    ))
}

const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Rewrites a day-of-week field with numbers 0-7 (0 and 7 Sunday) as a list of day names.
fn day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    if !field.chars().any(|c| c.is_ascii_digit()) {
        return Ok(field.to_owned());
    }
    let number = |s: &str| -> Result<usize, String> {
        if let Some(i) = DAYS.iter().position(|d| d.eq_ignore_ascii_case(s)) {
            return Ok(i);
        }
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(format!(
                "day of week {s:?}: use 0-7 (0 and 7 are Sunday) or SUN-SAT"
            )),
        }
    };
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>()
                    .map_err(|_| format!("bad step in {part:?}"))?
                    .max(1),
            ),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(r)?, 6),
                None => (number(r)?, number(r)?),
            },
        };
        if from > to {
            return Err(format!("day-of-week range {range:?} runs backwards"));
        }
        for d in (from..=to).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(DAYS
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(d, _)| *d)
        .collect::<Vec<_>>()
        .join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        let t = humantime::parse_rfc3339(text).unwrap();
        Timestamp(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64)
    }

    fn next(expr: &str, zone: Option<&str>, after: &str) -> String {
        let s = Schedule::parse(expr, zone, ts(after)).unwrap();
        s.next_after(ts(after)).unwrap().to_string()
    }

    #[test]
    fn five_six_and_seven_fields() {
        assert_eq!(
            next("5 * * * *", None, "2026-11-21T10:07:00Z"),
            "2026-11-21T11:05:00.000Z"
        );
        assert_eq!(
            next("0 12 * * * 2027", None, "2026-11-21T10:07:00Z"),
            "2027-01-01T12:00:00.000Z"
        );
        assert_eq!(
            next("30 0 12 * * * *", None, "2026-11-21T10:07:00Z"),
            "2026-11-21T12:00:30.000Z"
        );
        assert_eq!(
            next("*/15 * * * *", None, "2026-11-21T10:07:00Z"),
            "2026-11-21T10:15:00.000Z"
        );
    }

    #[test]
    fn days_of_week_count_from_sunday_zero_or_seven() {
        // 2026-11-21 is a Saturday.
        assert_eq!(
            next("0 9 * * 0", None, "2026-11-21T10:00:00Z"),
            "2026-11-22T09:00:00.000Z"
        );
        assert_eq!(
            next("0 9 * * 7", None, "2026-11-21T10:00:00Z"),
            "2026-11-22T09:00:00.000Z"
        );
        assert_eq!(
            next("0 9 * * 1-5", None, "2026-11-21T10:00:00Z"),
            "2026-11-23T09:00:00.000Z"
        );
        assert_eq!(
            next("0 9 * * MON", None, "2026-11-21T10:00:00Z"),
            "2026-11-23T09:00:00.000Z"
        );
        assert_eq!(
            next("0 9 * * 6", None, "2026-11-21T08:00:00Z"),
            "2026-11-21T09:00:00.000Z"
        );
        assert_eq!(day_of_week("1-5/2").unwrap(), "MON,WED,FRI");
        assert!(day_of_week("5-1").is_err());
    }

    #[test]
    fn macros_and_time_zones() {
        assert_eq!(
            next("@hourly", None, "2026-11-21T10:07:00Z"),
            "2026-11-21T11:00:00.000Z"
        );
        assert_eq!(
            next("@annually", None, "2026-11-21T10:07:00Z"),
            "2027-01-01T00:00:00.000Z"
        );
        // 09:00 in Rome is 08:00 UTC in November.
        assert_eq!(
            next("0 9 * * *", Some("Europe/Rome"), "2026-11-21T10:07:00Z"),
            "2026-11-22T08:00:00.000Z"
        );
        assert!(
            Schedule::parse("0 9 * * *", Some("Mars/Base"), ts("2026-11-21T10:07:00Z"))
                .unwrap_err()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn one_shots() {
        let now = ts("2026-11-21T10:00:00Z");
        assert!(matches!(
            Schedule::parse("now", None, now).unwrap(),
            Schedule::Now
        ));
        let at = Schedule::parse("2026-11-21T10:00:05Z", None, now).unwrap();
        assert_eq!(at.next_after(now), Some(ts("2026-11-21T10:00:05Z")));
        assert_eq!(at.next_after(ts("2026-11-21T10:00:05Z")), None);
        let past = Schedule::parse("2020-02-03T19:34:05Z", None, now).unwrap_err();
        assert!(past.contains("is in the past"), "{past}");
    }

    #[test]
    fn bad_expressions_say_why() {
        let now = ts("2026-11-21T10:00:00Z");
        assert!(
            Schedule::parse("every day", None, now)
                .unwrap_err()
                .contains("2 fields")
        );
        assert!(
            Schedule::parse("0 0 L * *", None, now)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            Schedule::parse("61 * * * *", None, now)
                .unwrap_err()
                .contains("invalid cron expression")
        );
        assert!(
            Schedule::parse("0 0 1 1 * 2020", None, now)
                .unwrap_err()
                .contains("never matches")
        );
    }

    #[test]
    fn catching_up_fires_once_for_the_latest_missed_time() {
        let s = Schedule::parse("*/10 * * * *", None, ts("2026-11-21T10:00:00Z")).unwrap();
        let latest = s.latest_between(ts("2026-11-21T10:00:00Z"), ts("2026-11-21T10:35:00Z"));
        assert_eq!(latest, Some(ts("2026-11-21T10:30:00Z")));
        assert_eq!(
            s.latest_between(ts("2026-11-21T10:00:00Z"), ts("2026-11-21T10:05:00Z")),
            None
        );
    }
}
