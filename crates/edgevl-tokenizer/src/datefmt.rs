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

/// A UTC calendar time.
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

/// Formats the UTC time `unix` (seconds since 1970) with the `strftime` specifiers `%Y %y %m
/// %d %e %j %H %I %M %S %p %B %b %A %a %%`; other specifiers are copied unchanged.
pub(crate) fn strftime(fmt: &str, unix: i64) -> String {
    let t = civil(unix);
    let month = MONTHS[(t.month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &t.year.to_string(),
            Some('y') => out += &format!("{:02}", t.year.rem_euclid(100)),
            Some('m') => out += &format!("{:02}", t.month),
            Some('d') => out += &format!("{:02}", t.day),
            Some('e') => out += &format!("{:2}", t.day),
            Some('j') => out += &format!("{:03}", t.yday),
            Some('H') => out += &format!("{:02}", t.hour),
            Some('I') => out += &format!("{:02}", (t.hour + 11) % 12 + 1),
            Some('M') => out += &format!("{:02}", t.min),
            Some('S') => out += &format!("{:02}", t.sec),
            Some('p') => out += if t.hour < 12 { "AM" } else { "PM" },
            Some('B') => out += month,
            Some('b') => out += &month[..3],
            Some('A') => out += DAYS[t.wday],
            Some('a') => out += &DAYS[t.wday][..3],
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strftime;

    /// Expected strings from Python: `time.strftime(fmt, time.gmtime(ts))`.
    #[test]
    fn matches_python_strftime() {
        let cases: [(i64, &str, &str); 12] = [
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
        ];
        for (ts, fmt, want) in cases {
            assert_eq!(strftime(fmt, ts), want, "{ts} {fmt}");
        }
    }
}
