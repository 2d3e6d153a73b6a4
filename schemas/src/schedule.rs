//! Ignitor schedules: `NOW`, an RFC 3339 time, or cron (5, 6 or 7 fields, or `@hourly`-style
//! macros) in an optional time zone. Pure: every function takes the time it reasons about.
//!
//! Cron fields follow Orca's library (cronexpr): 5 fields are `min hour dom mon dow`; 6 fields
//! add a year at the end; 7 fields are `sec min hour dom mon dow year`. Day-of-week numbers
//! run 0-7 with both 0 and 7 meaning Sunday; names (`MON`) work too. `L`, `W` and `#` are not
//! supported and are refused with a clear error.
//!
//! Day of month and day of week combine as in cronexpr and Vixie cron: when both are
//! restricted (neither is `*` or `?`), a day matches when *either* does, so `0 0 1 * MON` fires
//! on the 1st and on every Monday. The `cron` crate requires both, so such an expression is
//! kept as two schedules, one per day field (the other `*`), and the earlier fire wins. As in
//! cronexpr, a stepped wildcard (`*/2`) counts as restricted.

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
        /// The parsed expression, in the 7-field form the `cron` crate reads: one schedule, or
        /// two whose fires are merged when both day fields are restricted (see the module's
        /// documentation).
        schedules: Vec<cron::Schedule>,
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
        // A time without an offset would be read as UTC, which a reader of `09:00` in a
        // local-time document does not expect; Orca (Go's RFC 3339) refused it too. Stored
        // schedules keep being read leniently by `read`.
        if matches!(schedule, Schedule::At(_))
            && DateTime::parse_from_rfc3339(scheduled.trim()).is_err()
        {
            return Err(format!(
                "{:?} has no UTC offset: write it as RFC 3339 with one, like 2027-01-15T09:00:00Z or 2027-01-15T09:00:00+01:00",
                scheduled.trim()
            ));
        }
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
        // With an offset (`Z`, `+01:00`), or without one as schedules accepted before offsets
        // were required (read as UTC).
        let at = DateTime::parse_from_rfc3339(text)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
            .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
            .or_else(|| humantime::parse_rfc3339_weak(text).ok());
        if let Some(at) = at
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
        let schedules = cron_expressions(text)?
            .iter()
            .map(|expression| {
                cron::Schedule::from_str(expression)
                    .map_err(|e| format!("invalid cron expression {text:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule::Cron { schedules, zone })
    }

    /// Returns the first fire strictly after `after`; `None` for a one-shot that is done or a
    /// cron expression with no match left.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Now => None,
            Schedule::At(at) => (*at > after).then_some(*at),
            Schedule::Cron { schedules, zone } => {
                let after = zone.from_utc_datetime(&to_utc(after)?.naive_utc());
                let next = schedules
                    .iter()
                    .filter_map(|s| s.after(&after).next())
                    .min()?;
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

/// Turns an Orca cron expression into the 7-field form of the `cron` crate: one expression,
/// or two when both day fields are restricted (one with each day field, the other `*`), whose
/// fires together are the expression's.
fn cron_expressions(text: &str) -> Result<Vec<String>, String> {
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
        return Ok(vec![macro_.to_owned()]);
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
                "cron field {field:?}: L (last day), W (nearest weekday) and # (nth weekday of the month) are not supported; list the days instead"
            ));
        }
    }
    let dow = day_of_week(rest[4])?;
    let expression = |dom: &str, dow: &str| {
        format!(
            "{second} {} {} {dom} {} {dow} {year}",
            rest[0], rest[1], rest[3]
        )
    };
    if restricted(rest[2]) && restricted(rest[4]) {
        Ok(vec![expression(rest[2], "*"), expression("*", &dow)])
    } else {
        Ok(vec![expression(rest[2], &dow)])
    }
}

/// Returns whether a day field restricts the days, as cronexpr decides: unless one of its
/// entries is `*` or `?` (a stepped `*/2` does restrict).
fn restricted(field: &str) -> bool {
    !field.split(',').any(|entry| entry == "*" || entry == "?")
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

    /// Successive fires after `after`, as the planner arms them.
    fn fires(expr: &str, after: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr, None, ts(after)).unwrap();
        let mut t = ts(after);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // 2026-11-21 is a Saturday. The 1st of the month, and every Monday (cronexpr, Vixie
        // cron); not "a 1st that is a Monday".
        assert_eq!(
            fires("0 0 1 * MON", "2026-11-21T00:00:00Z", 5),
            [
                "2026-11-23T00:00:00.000Z",
                "2026-11-30T00:00:00.000Z",
                "2026-12-01T00:00:00.000Z",
                "2026-12-07T00:00:00.000Z",
                "2026-12-14T00:00:00.000Z",
            ]
        );
        // Numbers, lists and a stepped wildcard are restrictions too; 7 fields and a year.
        assert_eq!(
            fires("30 0 12 15,20 * 5 2026", "2026-11-21T00:00:00Z", 4),
            [
                "2026-11-27T12:00:30.000Z",
                "2026-12-04T12:00:30.000Z",
                "2026-12-11T12:00:30.000Z",
                "2026-12-15T12:00:30.000Z",
            ]
        );
        assert_eq!(
            fires("0 0 */10 * 0", "2026-11-21T00:00:00Z", 3),
            [
                "2026-11-22T00:00:00.000Z",
                "2026-11-29T00:00:00.000Z",
                "2026-12-01T00:00:00.000Z",
            ]
        );
        // One restricted field alone restricts: only the 1st, or only Mondays.
        assert_eq!(
            fires("0 0 1 * *", "2026-11-21T00:00:00Z", 2),
            ["2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z"]
        );
        assert_eq!(
            fires("0 0 ? * MON", "2026-11-21T00:00:00Z", 2),
            ["2026-11-23T00:00:00.000Z", "2026-11-30T00:00:00.000Z"]
        );
        assert_eq!(
            fires("0 0 * * 1", "2026-11-21T00:00:00Z", 1),
            ["2026-11-23T00:00:00.000Z"]
        );
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
        let offset = Schedule::parse("2026-11-21T11:00:05+01:00", None, now).unwrap();
        assert_eq!(offset.next_after(now), Some(ts("2026-11-21T10:00:05Z")));
    }

    #[test]
    fn a_one_shot_without_an_offset_is_refused() {
        let now = ts("2026-11-21T10:00:00Z");
        let e = Schedule::parse("2026-12-01T09:00:00", None, now).unwrap_err();
        assert!(e.contains("has no UTC offset"), "{e}");
        // What was stored before this rule is still read, as UTC.
        let stored = Schedule::read("2026-12-01T09:00:00", None).unwrap();
        assert_eq!(stored.next_after(now), Some(ts("2026-12-01T09:00:00Z")));
    }

    #[test]
    fn bad_expressions_say_why() {
        let now = ts("2026-11-21T10:00:00Z");
        assert!(
            Schedule::parse("every day", None, now)
                .unwrap_err()
                .contains("2 fields")
        );
        for refused in [
            "0 0 L * *",
            "0 0 15W * *",
            "0 0 LW * *",
            "0 0 * * 5L",
            "0 0 * * MON#2",
        ] {
            let error = Schedule::parse(refused, None, now).unwrap_err();
            assert!(
                error.contains("L (last day), W (nearest weekday) and # (nth weekday of the month) are not supported"),
                "{refused}: {error}"
            );
        }
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
