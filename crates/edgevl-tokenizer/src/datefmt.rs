//! `strftime`-style date formatting for the chat templates' `strftime_now` (used by LLaMA-3
//! templates for "Today Date: 26 Jul 2024").

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
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// A calendar time (UTC, or the local zone's once the offset is added).
struct Civil {
    year: i64,
    month: u32,  // 1..=12
    day: u32,    // 1..=31
    yday: u32,   // 1..=366
    wday: usize, // 0 = Monday
    hour: u32,
    min: u32,
    sec: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn civil(unix: i64) -> Civil {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u32;
    // Days-to-civil conversion (proleptic Gregorian), era-based.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap_extra = u32::from(month > 2 && is_leap(year));
    Civil {
        year,
        month,
        day,
        yday: CUM[(month - 1) as usize] + day + leap_extra,
        // 1970-01-01 was a Thursday (index 3).
        wday: (days + 3).rem_euclid(7) as usize,
        hour: secs / 3600,
        min: secs / 60 % 60,
        sec: secs % 60,
    }
}

/// Formats the time `unix` (seconds since 1970, shifted to the zone wanted) with the `strftime`
/// specifiers `%Y %y %m %d %e %j %H %I %M %S %p %B %b %h %A %a %u %w %F %T %D %R %%`, and glibc's
/// `-` flag (`%-d`: no padding) on the numeric ones; other specifiers are copied unchanged.
pub(crate) fn strftime(fmt: &str, unix: i64) -> String {
    let t = civil(unix);
    let month = MONTHS[(t.month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.next_if_eq(&'-').is_some();
        // A number `width` digits wide (space-padded with `space`), or as is with the `-` flag.
        let num = |v: i64, width: usize, space: bool| match (unpadded, space) {
            (true, _) => v.to_string(),
            (false, true) => format!("{v:>width$}"),
            (false, false) => format!("{v:0width$}"),
        };
        match chars.next() {
            Some('Y') => out += &t.year.to_string(),
            Some('y') => out += &num(t.year.rem_euclid(100), 2, false),
            Some('m') => out += &num(t.month.into(), 2, false),
            Some('d') => out += &num(t.day.into(), 2, false),
            Some('e') => out += &num(t.day.into(), 2, true),
            Some('j') => out += &num(t.yday.into(), 3, false),
            Some('H') => out += &num(t.hour.into(), 2, false),
            Some('I') => out += &num(((t.hour + 11) % 12 + 1).into(), 2, false),
            Some('M') => out += &num(t.min.into(), 2, false),
            Some('S') => out += &num(t.sec.into(), 2, false),
            Some('p') => out += if t.hour < 12 { "AM" } else { "PM" },
            Some('B') => out += month,
            Some('b' | 'h') => out += &month[..3],
            Some('A') => out += DAYS[t.wday],
            Some('a') => out += &DAYS[t.wday][..3],
            Some('u') => out += &(t.wday + 1).to_string(),
            Some('w') => out += &((t.wday + 1) % 7).to_string(),
            Some('F') => out += &strftime("%Y-%m-%d", unix),
            Some('T') => out += &strftime("%H:%M:%S", unix),
            Some('D') => out += &strftime("%m/%d/%y", unix),
            Some('R') => out += &strftime("%H:%M", unix),
            Some('%') => out.push('%'),
            // Another specifier, or a '%' ending the format: copied as it stands.
            other => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.extend(other);
            }
        }
    }
    out
}

/// Seconds east of UTC of the local time zone at `unix` (the `TZ` variable, else the system's
/// zone, as C's `localtime` reads them): transformers' `strftime_now` formats `datetime.now()`
/// and llama.cpp's `std::localtime`, both local. 0 where the zone cannot be read.
pub(crate) fn local_offset(unix: i64) -> i64 {
    use chrono::{Local, Offset, TimeZone};
    match Local.timestamp_opt(unix, 0) {
        chrono::LocalResult::Single(t) => t.offset().fix().local_minus_utc().into(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::strftime;

    /// Expected strings from Python on glibc: `time.strftime(fmt, time.gmtime(ts))`, glibc's `-`
    /// flag and the composite specifiers included.
    #[test]
    fn matches_python_strftime() {
        let cases: [(i64, &str, &str); 18] = [
            (0, "%d %b %Y", "01 Jan 1970"),
            (0, "%A %B %e %y %j %%", "Thursday January  1 70 001 %"),
            (0, "%a %I %p", "Thu 12 AM"),
            (951782400, "%d %b %Y", "29 Feb 2000"),
            (951782400, "%A %B %e %y %j %%", "Tuesday February 29 00 060 %"),
            (1732550400, "%Y-%m-%d %H:%M:%S", "2024-11-25 16:00:00"),
            (1732550400, "%A %B %e %y %j %%", "Monday November 25 24 330 %"),
            (1732550400, "%a %I %p", "Mon 04 PM"),
            (1709168461, "%Y-%m-%d %H:%M:%S", "2024-02-29 01:01:01"),
            (1709168461, "%A %B %e %y %j %%", "Thursday February 29 24 060 %"),
            (4102444799, "%A %B %e %y %j %%", "Thursday December 31 99 365 %"),
            (4102444799, "%a %I %p", "Thu 11 PM"),
            (1709168461, "%-d %b %Y", "29 Feb 2024"),
            (0, "%-d/%-m/%-y %-H:%-M:%-S %-j %-I", "1/1/70 0:0:0 1 12"),
            (1732550400, "%F %T %D %R", "2024-11-25 16:00:00 11/25/24 16:00"),
            (1732550400, "%h %u %w", "Nov 1 1"),
            (0, "%u %w", "4 4"),
            (4102444799, "%u %w %-q %", "4 4 %-q %"),
        ];
        for (ts, fmt, want) in cases {
            assert_eq!(strftime(fmt, ts), want, "{ts} {fmt}");
        }
    }

    /// The local zone is the one `TZ` names (a POSIX rule string: no zone files needed). Set in
    /// this process, not in a child (the aarch64 tests run under qemu-user, where a re-executed
    /// test binary does not run); each reading on a new thread, as chrono keeps a thread's zone
    /// for a second.
    #[test]
    fn the_local_offset_follows_tz() {
        let before = std::env::var_os("TZ");
        let offset_under = |tz: &str| {
            std::env::set_var("TZ", tz);
            std::thread::spawn(|| super::local_offset(1_700_000_000)).join().expect("reading")
        };
        let plus_14 = offset_under("XYZ-14");
        let minus_3 = offset_under("XYZ+3");
        match before {
            Some(tz) => std::env::set_var("TZ", tz),
            None => std::env::remove_var("TZ"),
        }
        assert_eq!((plus_14, minus_3), (14 * 3600, -3 * 3600));
    }
}
