//! What every `cargo xtask bench ...` JSON says about when and where it was
//! measured (the UTC date, the machine, its load average read from
//! `/proc/loadavg`) and how repeated samples are summed up, in one place so
//! that every benchmark reports them the same way. The machine is shared
//! with other work, so the load is part of every result, never typed in.

use std::{
    fs,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// The host a benchmark ran on, read when the report is made.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    /// SHA-256 in hardware: what hashing throughput depends on.
    pub sha_ni: bool,
    pub load_average: Option<LoadAverage>,
}

/// `/proc/loadavg`: runnable tasks averaged over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadAverage {
    pub one_min: f64,
    pub five_min: f64,
    pub fifteen_min: f64,
}

/// Summary of timed samples (rounded to 0.1, in the samples' unit).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    pub min: f64,
    pub median: f64,
    pub p90: f64,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |fraction: f64| {
            let idx = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
            sorted.get(idx).copied().unwrap_or(f64::NAN)
        };
        let round = |value: f64| (value * 10.0).round() / 10.0;
        Stats { min: round(at(0.0)), median: round(median(samples)), p90: round(at(0.9)) }
    }
}

/// The middle sample (the mean of the two middle ones for an even count);
/// 0 for none.
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let sha_ni =
        cpuinfo.lines().any(|line| line.starts_with("flags") && line.split_whitespace().any(|flag| flag == "sha_ni"));
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        sha_ni,
        load_average: load_average(),
    }
}

/// The load average now, from `/proc/loadavg`.
pub fn load_average() -> Option<LoadAverage> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some(LoadAverage {
        one_min: fields.next()?.ok()?,
        five_min: fields.next()?.ok()?,
        fifteen_min: fields.next()?.ok()?,
    })
}

/// Now as `2026-11-27T11:44:36Z`.
pub fn utc_now() -> String {
    utc_date(SystemTime::now())
}

/// `2026-11-27T11:44:36Z` (civil date from days since the epoch).
pub fn utc_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|it| it.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// CPU time (user + system) this process used so far, in ms.
pub fn cpu_time_ms() -> f64 {
    rusage_ms(libc::RUSAGE_SELF)
}

/// CPU time (user + system) of this process's waited-for children so far,
/// in ms: the difference around one child's run is what that child used.
pub fn children_cpu_time_ms() -> f64 {
    rusage_ms(libc::RUSAGE_CHILDREN)
}

fn rusage_ms(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let ms = |tv: libc::timeval| tv.tv_sec as f64 * 1e3 + tv.tv_usec as f64 / 1e3;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_and_medians() {
        let date = super::utc_date(UNIX_EPOCH + Duration::from_secs(1_795_779_876));
        assert_eq!(date, "2026-11-27T11:44:36Z");
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let stats = super::Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((stats.min, stats.median, stats.p90), (1.0, 3.0, 5.0));
        assert!(super::load_average().is_some(), "no /proc/loadavg");
    }
}
