//! What the server counts: requests and body bytes, in total and per client
//! IP address, plus rejected requests and refused connections.
//!
//! The totals are atomics so that counting costs no lock on the hot path.
//! Each connection looks up its client's counters once, when it is accepted,
//! and then adds to them directly. The same numbers are served as JSON at
//! `/.edgelab/counters` and printed as the summary at shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Bytes in a megabyte, as the original Go server counted them.
pub const BYTES_PER_MB: f64 = 1000.0 * 1000.0;

/// The live counters of one server.
pub(crate) struct Counters {
    started_at: SystemTime,
    started: Instant,
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    rejected: AtomicU64,
    refused_connections: AtomicU64,
    clients: Mutex<BTreeMap<IpAddr, Arc<ClientCounters>>>,
}

/// The live counters of one client IP address.
#[derive(Default)]
pub(crate) struct ClientCounters {
    requests: AtomicU64,
    bytes_sent: AtomicU64,
}

/// The counters at one moment: the JSON at `/.edgelab/counters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    /// Requests answered, whatever their status; the counters path itself is
    /// not counted.
    pub requests: u64,
    /// Body bytes handed to the connection, summed over all requests.
    pub bytes_sent: u64,
    /// When the server started, as RFC 3339 UTC.
    pub started_at: String,
    /// Per client IP address.
    pub clients: BTreeMap<IpAddr, ClientTotals>,
    /// Requests refused for their path (traversal and the like).
    pub rejected: u64,
    /// Connections closed at once because `max_connections` were open.
    pub refused_connections: u64,
}

/// The totals of one client IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClientTotals {
    pub requests: u64,
    pub bytes_sent: u64,
}

/// What `Server::run` returns at shutdown; its `Display` is the summary a
/// person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub counters: CountersSnapshot,
    pub uptime: Duration,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            started_at: SystemTime::now(),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// The counters of `client_ip`, created on its first connection.
    pub(crate) fn client(&self, client_ip: IpAddr) -> Arc<ClientCounters> {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        clients.entry(client_ip).or_default().clone()
    }

    /// Counts a request and returns its number, starting at 1.
    pub(crate) fn count_request(&self, client: &ClientCounters) -> u64 {
        client.requests.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts body bytes sent and returns the new total.
    pub(crate) fn count_bytes(&self, client: &ClientCounters, n_bytes: u64) -> u64 {
        client.bytes_sent.fetch_add(n_bytes, Ordering::Relaxed);
        self.bytes_sent.fetch_add(n_bytes, Ordering::Relaxed) + n_bytes
    }

    pub(crate) fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    pub(crate) fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        let clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let clients = clients
            .iter()
            .map(|(client_ip, client)| {
                let totals = ClientTotals {
                    requests: client.requests.load(Ordering::Relaxed),
                    bytes_sent: client.bytes_sent.load(Ordering::Relaxed),
                };
                (*client_ip, totals)
            })
            .collect();
        CountersSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            started_at: format_rfc3339(self.started_at),
            clients,
            rejected: self.rejected.load(Ordering::Relaxed),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn summary(&self) -> Summary {
        Summary { counters: self.snapshot(), uptime: self.started.elapsed() }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counters = &self.counters;
        writeln!(
            f,
            "summary: {} requests, {:.3} MB sent in {:.1} s ({} rejected, {} connections refused)",
            counters.requests,
            counters.bytes_sent as f64 / BYTES_PER_MB,
            self.uptime.as_secs_f64(),
            counters.rejected,
            counters.refused_connections,
        )?;
        for (client_ip, totals) in &counters.clients {
            writeln!(
                f,
                "  {:<39}  {:>7} requests  {:>10.3} MB",
                client_ip.to_string(),
                totals.requests,
                totals.bytes_sent as f64 / BYTES_PER_MB,
            )?;
        }
        Ok(())
    }
}

/// Formats `time` as `YYYY-MM-DDTHH:MM:SSZ` in UTC. Written out here rather
/// than pulling in a date crate for one timestamp.
pub(crate) fn format_rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date in the proleptic
/// Gregorian calendar, after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(unix_seconds: u64, expect: &str) {
        let time = UNIX_EPOCH + Duration::from_secs(unix_seconds);
        assert_eq!(format_rfc3339(time), expect);
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        check(0, "1970-01-01T00:00:00Z");
        check(951_782_400, "2000-02-29T00:00:00Z");
        check(1_700_000_000, "2023-11-14T22:13:20Z");
        check(4_107_542_399, "2100-02-28T23:59:59Z");
    }

    #[test]
    fn counters_add_up_per_client() {
        let counters = Counters::new();
        let first = counters.client("127.0.0.1".parse().unwrap());
        let second = counters.client("127.0.0.2".parse().unwrap());
        assert_eq!(counters.count_request(&first), 1);
        assert_eq!(counters.count_request(&second), 2);
        assert_eq!(counters.count_bytes(&first, 10), 10);
        assert_eq!(counters.count_bytes(&second, 5), 15);
        counters.count_rejected();
        let snapshot = counters.snapshot();
        assert_eq!((snapshot.requests, snapshot.bytes_sent, snapshot.rejected), (2, 15, 1));
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["clients"]["127.0.0.1"]["bytes_sent"], 10);
        assert_eq!(json["clients"]["127.0.0.2"]["requests"], 1);
    }
}
