//! Sampling of refusals per remote address, so that a flood of bad requests costs the audit
//! trail a few lines a minute instead of one line per request.
//!
//! Each address (IPv4 alone, IPv6 by its /64, since one host usually owns a whole /64; records
//! without an address together) gets a window that opens with its first refusal. The first
//! `max` refusals in the window are written; the rest are only counted. When the window has
//! ended, one summary record says how many were left out. The summary comes with the next
//! record of any kind after the window ends (its address's next refusal writes it at once;
//! any other record finds it through one atomic load), not from a timer: the same code serves
//! `tracing`-only logs, which have no thread to run a timer on, and the summary then lands in
//! the file in time order, before the record that found it. What is still counted when the
//! log is dropped is summarised then.
//!
//! The table is bounded: at most [`MAX_ADDRESSES`] addresses (about 32 bytes each). A new
//! address finding it full sweeps out ended windows (at most once per [`SWEEP_EVERY`], so a
//! flood from many addresses cannot make every refusal walk the table); if it is still full,
//! the address shares one window with every other address that found no room.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The most addresses with a window at once.
pub(super) const MAX_ADDRESSES: usize = 4096;

/// Sweeps of the table (for summaries due, or for room) run at most this often (or once per
/// window, if the window is shorter).
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The per-address refusal sampler of one audit log.
pub(super) struct Refusals {
    /// Refusals written per address per window.
    max: u32,
    /// The window, in nanoseconds.
    window: u64,
    /// Nanoseconds between sweeps.
    sweep_every: u64,
    /// What the nanosecond timestamps count from.
    epoch: Instant,
    /// When the next summary is due (nanoseconds since `epoch`), `u64::MAX` when none is owed:
    /// all an allowed record looks at.
    due: AtomicU64,
    /// Refusals left out since the log was made.
    suppressed: AtomicU64,
    table: Mutex<Table>,
}

/// The windows, behind the lock.
struct Table {
    windows: HashMap<Source, Window>,
    /// The window shared by addresses that found the table full.
    shared: Option<Window>,
    /// No sweep before this time.
    next_sweep: u64,
}

/// One address's current window.
#[derive(Clone, Copy)]
struct Window {
    /// When it opened (nanoseconds since the epoch).
    start: u64,
    /// Refusals written in it.
    written: u32,
    /// Refusals counted but not written in it.
    suppressed: u32,
}

impl Window {
    /// A window opening at `now`, nothing counted yet.
    fn opening(now: u64) -> Self {
        Self {
            start: now,
            written: 0,
            suppressed: 0,
        }
    }
}

/// Whose refusals a window counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Source {
    /// Records without a remote address.
    NoAddress,
    /// One IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(Ipv4Addr),
    /// One IPv6 /64 network: the address's first 64 bits.
    V6(u64),
    /// Every address that found the table full.
    Shared,
}

impl Source {
    /// The window `addr` counts in.
    fn of(addr: Option<SocketAddr>) -> Self {
        match addr.map(|a| a.ip()) {
            None => Source::NoAddress,
            Some(IpAddr::V4(v4)) => Source::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// How many refusals one source had left out of a window that has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Summary {
    /// Whose refusals.
    pub(super) source: Source,
    /// How many were counted but not written.
    pub(super) suppressed: u64,
}

impl Summary {
    /// The address the summary names: the IPv4 address or the /64 network, with port 0 (as
    /// for records with no port); none for records without an address or the shared window.
    pub(super) fn remote_addr(&self) -> Option<SocketAddr> {
        match self.source {
            Source::V4(v4) => Some(SocketAddr::new(IpAddr::V4(v4), 0)),
            Source::V6(network) => Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from_bits(u128::from(network) << 64)),
                0,
            )),
            Source::NoAddress | Source::Shared => None,
        }
    }

    /// The summary's `detail`: whose refusals were left out.
    pub(super) fn detail(&self) -> &'static str {
        match self.source {
            Source::V4(_) => {
                "refusals from this address over the limit per window were not recorded"
            }
            Source::V6(_) => {
                "refusals from this /64 network over the limit per window were not recorded"
            }
            Source::NoAddress => {
                "refusals without a remote address over the limit per window were not recorded"
            }
            Source::Shared => {
                "refusals from addresses beyond the tracked ones over the limit per window were \
                 not recorded"
            }
        }
    }
}

impl Refusals {
    /// At most `max` refusals written per address per `window`.
    pub(super) fn new(max: u32, window: Duration) -> Self {
        let window = nanos(window);
        Self {
            max,
            window,
            sweep_every: window.min(nanos(SWEEP_EVERY)),
            epoch: Instant::now(),
            due: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
            table: Mutex::new(Table {
                windows: HashMap::new(),
                shared: None,
                next_sweep: 0,
            }),
        }
    }

    /// The limits, for `Debug`.
    pub(super) fn limits(&self) -> (u32, Duration) {
        (self.max, Duration::from_nanos(self.window))
    }

    /// Refusals left out so far.
    pub(super) fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Decides whether a refusal from `addr` is written (`true`) or only counted; adds the
    /// summaries now due to `summaries`.
    pub(super) fn admit(&self, addr: Option<SocketAddr>, summaries: &mut Vec<Summary>) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock, so that time never runs backwards between two decisions.
        let now = self.now();
        self.admit_at(&mut table, addr, now, summaries)
    }

    /// For an allowed record: adds the summaries due, if any. Costs one atomic load unless a
    /// summary is owed.
    pub(super) fn summaries_due(&self, summaries: &mut Vec<Summary>) {
        if self.due.load(Ordering::Relaxed) == u64::MAX {
            return;
        }
        self.summaries_due_at(self.now(), summaries);
    }

    /// Every count not yet summarised, window ended or not (when the log goes away).
    pub(super) fn drain(&self, summaries: &mut Vec<Summary>) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        self.sweep(&mut table, now, true, summaries);
    }

    /// [`Refusals::summaries_due`] at `now`.
    fn summaries_due_at(&self, now: u64, summaries: &mut Vec<Summary>) {
        if now < self.due.load(Ordering::Relaxed) {
            return;
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if now >= self.due.load(Ordering::Relaxed) {
            self.sweep(&mut table, now, false, summaries);
        }
    }

    /// [`Refusals::admit`] at `now`, with the table already locked.
    fn admit_at(
        &self,
        table: &mut Table,
        addr: Option<SocketAddr>,
        now: u64,
        summaries: &mut Vec<Summary>,
    ) -> bool {
        if now >= self.due.load(Ordering::Relaxed) {
            self.sweep(table, now, false, summaries);
        }
        let source = Source::of(addr);
        if table.windows.len() >= MAX_ADDRESSES
            && now >= table.next_sweep
            && !table.windows.contains_key(&source)
        {
            self.sweep(table, now, false, summaries);
        }
        let next_sweep = table.next_sweep;
        let room = table.windows.len() < MAX_ADDRESSES;
        let (source, window) = match table.windows.entry(source) {
            Entry::Occupied(entry) => (source, entry.into_mut()),
            Entry::Vacant(entry) if room => (source, entry.insert(Window::opening(now))),
            Entry::Vacant(_) => (
                Source::Shared,
                table.shared.get_or_insert(Window::opening(now)),
            ),
        };
        if now.saturating_sub(window.start) >= self.window {
            if window.suppressed > 0 {
                summaries.push(Summary {
                    source,
                    suppressed: u64::from(window.suppressed),
                });
            }
            *window = Window::opening(now);
        }
        if window.written < self.max {
            window.written += 1;
            return true;
        }
        window.suppressed = window.suppressed.saturating_add(1);
        if window.suppressed == 1 {
            // A summary is owed once this window ends (and a sweep may run).
            let at = window.start.saturating_add(self.window).max(next_sweep);
            self.due.fetch_min(at, Ordering::Relaxed);
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Summarises and forgets every window that has ended (every window, if `everything`), and
    /// notes when the next summary is due.
    fn sweep(&self, table: &mut Table, now: u64, everything: bool, summaries: &mut Vec<Summary>) {
        let window = self.window;
        let ended = |w: &Window| everything || now.saturating_sub(w.start) >= window;
        let mut next_due = u64::MAX;
        table.windows.retain(|&source, w| {
            if ended(w) {
                if w.suppressed > 0 {
                    summaries.push(Summary {
                        source,
                        suppressed: u64::from(w.suppressed),
                    });
                }
                return false;
            }
            if w.suppressed > 0 {
                next_due = next_due.min(w.start.saturating_add(window));
            }
            true
        });
        if let Some(w) = table.shared {
            if ended(&w) {
                if w.suppressed > 0 {
                    summaries.push(Summary {
                        source: Source::Shared,
                        suppressed: u64::from(w.suppressed),
                    });
                }
                table.shared = None;
            } else if w.suppressed > 0 {
                next_due = next_due.min(w.start.saturating_add(window));
            }
        }
        table.next_sweep = now.saturating_add(self.sweep_every);
        let due = match next_due {
            u64::MAX => u64::MAX,
            at => at.max(table.next_sweep),
        };
        self.due.store(due, Ordering::Relaxed);
    }

    /// Nanoseconds since the epoch.
    fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }
}

/// `duration` in nanoseconds, saturating (585 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    /// Runs `admit_at` at `now`, returning the decision and the summaries it produced.
    fn admit(r: &Refusals, from: Option<SocketAddr>, now: u64) -> (bool, Vec<Summary>) {
        let mut summaries = Vec::new();
        let mut table = r.table.lock().unwrap();
        let written = r.admit_at(&mut table, from, now, &mut summaries);
        (written, summaries)
    }

    #[test]
    fn refusals_over_the_limit_are_counted_then_summarised_once() {
        let r = Refusals::new(3, Duration::from_secs(60));
        let a = addr("203.0.113.7:4000");
        let written: Vec<bool> = (0..10).map(|i| admit(&r, a, i).0).collect();
        assert_eq!(
            written,
            [
                true, true, true, false, false, false, false, false, false, false
            ]
        );
        assert_eq!(r.suppressed(), 7);
        // Still inside the window: nothing to summarise yet.
        assert_eq!(admit(&r, a, 59 * SECOND).1, []);
        // The window has ended: its next refusal brings the one summary, and is written.
        let (written, summaries) = admit(&r, addr("203.0.113.7:5000"), 61 * SECOND);
        assert!(written);
        let summary = Summary {
            source: Source::V4("203.0.113.7".parse().unwrap()),
            suppressed: 8,
        };
        assert_eq!(summaries, [summary]);
        assert_eq!(summary.remote_addr(), addr("203.0.113.7:0"));
        // Nothing is owed any more.
        assert_eq!(admit(&r, a, 62 * SECOND).1, []);
        let mut due = Vec::new();
        r.summaries_due_at(200 * SECOND, &mut due);
        assert_eq!(due, []);
    }

    #[test]
    fn another_record_after_the_window_brings_the_summary() {
        let r = Refusals::new(1, Duration::from_secs(10));
        let a = addr("198.51.100.1:1");
        for now in 0..5 {
            admit(&r, a, now);
        }
        let mut due = Vec::new();
        r.summaries_due_at(9 * SECOND, &mut due);
        assert_eq!(due, [], "the window has not ended");
        r.summaries_due_at(10 * SECOND, &mut due);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].suppressed, 4);
        // Once.
        due.clear();
        r.summaries_due_at(11 * SECOND, &mut due);
        assert_eq!(due, []);
        assert_eq!(r.due.load(Ordering::Relaxed), u64::MAX);
    }

    #[test]
    fn addresses_count_alone_and_ipv6_per_64() {
        let r = Refusals::new(1, Duration::from_secs(60));
        assert!(admit(&r, addr("192.0.2.1:1"), 0).0);
        assert!(admit(&r, addr("192.0.2.2:1"), 0).0, "another IPv4 address");
        assert!(
            !admit(&r, addr("[::ffff:192.0.2.1]:9"), 0).0,
            "the same, IPv4-mapped"
        );
        assert!(admit(&r, addr("[2001:db8:0:1::1]:1"), 0).0);
        assert!(
            !admit(&r, addr("[2001:db8:0:1:ffff::2]:1"), 0).0,
            "the same /64"
        );
        assert!(admit(&r, addr("[2001:db8:0:2::1]:1"), 0).0, "another /64");
        assert!(admit(&r, None, 0).0);
        assert!(
            !admit(&r, None, 0).0,
            "records without an address share a window"
        );
        let mut all = Vec::new();
        r.drain(&mut all);
        all.sort_by_key(|s| format!("{:?}", s.source));
        let v6 = Summary {
            source: Source::V6(0x2001_0db8_0000_0001),
            suppressed: 1,
        };
        assert!(all.contains(&v6), "{all:?}");
        assert_eq!(v6.remote_addr(), addr("[2001:db8:0:1::]:0"));
        assert_eq!(all.len(), 3, "{all:?}");
    }

    #[test]
    fn a_full_table_sweeps_ended_windows_then_shares_one_window() {
        let r = Refusals::new(1, Duration::from_secs(60));
        let nth = |i: usize| Some(SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1)));
        for i in 0..MAX_ADDRESSES {
            assert!(admit(&r, nth(i), 0).0);
        }
        // The first address's second refusal is counted in its own window.
        assert!(!admit(&r, nth(0), 1).0);
        // Full, nothing ended: newcomers share a window (one written, the rest counted).
        let (first, _) = admit(&r, addr("172.16.0.1:1"), 2 * SECOND);
        let (second, _) = admit(&r, addr("172.16.0.2:1"), 2 * SECOND);
        assert!(first && !second);
        assert_eq!(r.table.lock().unwrap().windows.len(), MAX_ADDRESSES);
        // Once the windows have ended, a newcomer's sweep makes room and brings the summaries.
        let (written, summaries) = admit(&r, addr("172.16.0.3:1"), 63 * SECOND);
        assert!(written);
        let mut sources: Vec<Source> = summaries.iter().map(|s| s.source).collect();
        sources.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(
            sources,
            [Source::Shared, Source::V4("10.0.0.0".parse().unwrap())]
        );
        assert_eq!(r.table.lock().unwrap().windows.len(), 1);
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_per_interval() {
        let r = Refusals::new(1, Duration::from_secs(2));
        let nth = |i: usize| Some(SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1)));
        for i in 0..MAX_ADDRESSES {
            admit(&r, nth(i), 0);
        }
        // The first newcomer sweeps (nothing has ended); the next ones within the interval do
        // not walk the table again.
        admit(&r, addr("172.16.1.1:1"), 10);
        let swept_until = r.table.lock().unwrap().next_sweep;
        assert_eq!(swept_until, 10 + SECOND);
        admit(&r, addr("172.16.1.2:1"), 20);
        assert_eq!(r.table.lock().unwrap().next_sweep, swept_until);
    }

    #[test]
    fn zero_writes_nothing_but_summaries() {
        let r = Refusals::new(0, Duration::from_secs(1));
        assert!(!admit(&r, None, 0).0);
        assert!(!admit(&r, None, 5).0);
        let (written, summaries) = admit(&r, None, 2 * SECOND);
        assert!(!written);
        assert_eq!(
            summaries,
            [Summary {
                source: Source::NoAddress,
                suppressed: 2
            }]
        );
    }
}
