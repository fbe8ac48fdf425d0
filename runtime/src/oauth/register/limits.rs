//! How many clients may register, from where: per address, per network prefix, and overall.
//!
//! Counting only per address is not enough (an attacker has many), and a small global cap is
//! worse: it lets a few dozen addresses use up everyone's registrations. So a registration is
//! counted three times, in fixed windows, and refused when any count is spent:
//!
//! | key | limit |
//! |---|---|
//! | the address: IPv4 /32, IPv6 /64 (a host usually owns a whole /64) | 30 per hour |
//! | its network: IPv4 /24, IPv6 /48 (one site, or one customer of a provider) | 120 per hour |
//! | everything | 20,000 per 24 hours |
//!
//! The per-prefix cap makes addresses from one network count together, so an attacker needs
//! many networks, not many addresses. The global cap is a last resort that only bounds the
//! store: together with the purge of unused self-registered clients after a day
//! ([`UNUSED_CLIENT_RETENTION_SECS`]) it keeps their number below about 40,000 at any time.
//! What it costs: denying registration to everyone needs the global cap spent, which takes at
//! least 7 prefixes working for the whole day (7 × 120 × 24 = 20,160), or 167 prefixes
//! (20,000 / 120, four addresses in each) to spend it within an hour and keep it spent for the
//! rest of the day. IPv4 networks are costly to gather; IPv6 /48s are not (one /40 holds 256),
//! so an attacker with IPv6 space can deny *new* registrations for up to a day. Clients already
//! registered, configured clients and Client ID Metadata Document clients keep working; a
//! server that must not depend on registration can turn it off and rely on metadata documents.
//!
//! Memory is bounded: each table tracks at most a fixed number of keys. When a new key finds
//! its table full, entries whose window has passed are swept; if it is still full, the request
//! is refused (429) rather than the table grown. Requests whose peer address is unknown (a
//! router served without connect info) share one key at each level.
//!
//! [`UNUSED_CLIENT_RETENTION_SECS`]: crate::store::UNUSED_CLIENT_RETENTION_SECS

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

/// The limits and table sizes of a [`RegistrationLimits`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Registrations per address (IPv4 /32, IPv6 /64) and window.
    pub(crate) per_address: u32,
    /// Registrations per network prefix (IPv4 /24, IPv6 /48) and window.
    pub(crate) per_prefix: u32,
    /// The window of the per-address and per-prefix counts.
    pub(crate) window: Duration,
    /// Registrations overall per global window.
    pub(crate) global: u32,
    /// The window of the global count.
    pub(crate) global_window: Duration,
    /// Most keys each of the address and prefix tables tracks.
    pub(crate) max_tracked: usize,
}

impl Default for Config {
    /// The limits of the module documentation; 10,000 tracked keys per table (a few hundred
    /// KiB at most).
    fn default() -> Self {
        Self {
            per_address: 30,
            per_prefix: 120,
            window: Duration::from_secs(3600),
            global: 20_000,
            global_window: Duration::from_secs(86_400),
            max_tracked: 10_000,
        }
    }
}

/// Counts registrations per address, per prefix and overall; see the module documentation.
pub(crate) struct RegistrationLimits {
    /// The limits.
    config: Config,
    /// The counters; never locked across an `.await`.
    counts: Mutex<Counts>,
}

/// The counters of the current windows.
struct Counts {
    /// All registrations together.
    global: Window,
    /// Per address key ([`address_key`]).
    addresses: Table,
    /// Per prefix key ([`prefix_key`]).
    prefixes: Table,
}

/// One fixed counting window.
#[derive(Clone, Copy)]
struct Window {
    /// When it began.
    start: Instant,
    /// Registrations counted in it.
    count: u32,
}

impl Window {
    /// A window starting at `now`, empty.
    fn fresh(now: Instant) -> Self {
        Self {
            start: now,
            count: 0,
        }
    }

    /// Restarts the window if it has passed; the time until it ends.
    fn roll(&mut self, now: Instant, length: Duration) -> Duration {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= length {
            *self = Self::fresh(now);
            return length;
        }
        length - elapsed
    }

    /// Whether the window has passed (its count no longer matters).
    fn is_over(&self, now: Instant, length: Duration) -> bool {
        now.saturating_duration_since(self.start) >= length
    }
}

/// Counting windows by key, never more than a fixed number of keys.
struct Table {
    /// `None`: requests whose peer address is unknown.
    windows: HashMap<Option<IpAddr>, Window>,
}

impl Table {
    /// An empty table.
    fn new() -> Self {
        Self {
            windows: HashMap::new(),
        }
    }

    /// Makes sure `key` is tracked or can be: when the table is full, windows that have passed
    /// are swept. `Err` holds the time until the earliest tracked window ends, when the table
    /// is still full.
    fn make_room(
        &mut self,
        key: Option<IpAddr>,
        now: Instant,
        window: Duration,
        max_tracked: usize,
    ) -> Result<(), Duration> {
        if self.windows.contains_key(&key) || self.windows.len() < max_tracked {
            return Ok(());
        }
        self.windows.retain(|_, w| !w.is_over(now, window));
        if self.windows.len() < max_tracked {
            return Ok(());
        }
        let soonest = self
            .windows
            .values()
            .map(|w| window.saturating_sub(now.saturating_duration_since(w.start)))
            .min()
            .unwrap_or(window);
        Err(soonest)
    }

    /// The count of `key`'s current window (zero when untracked or passed) and the time until
    /// that window ends.
    fn current(&mut self, key: Option<IpAddr>, now: Instant, window: Duration) -> (u32, Duration) {
        match self.windows.get_mut(&key) {
            Some(w) => {
                let left = w.roll(now, window);
                (w.count, left)
            }
            None => (0, window),
        }
    }

    /// Counts one registration for `key` (after [`Table::make_room`] allowed it).
    fn count(&mut self, key: Option<IpAddr>, now: Instant) {
        self.windows
            .entry(key)
            .or_insert_with(|| Window::fresh(now))
            .count += 1;
    }
}

impl RegistrationLimits {
    /// Limits with empty counters.
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            counts: Mutex::new(Counts {
                global: Window::fresh(Instant::now()),
                addresses: Table::new(),
                prefixes: Table::new(),
            }),
        }
    }

    /// Counts one registration from `remote` now, or says how long to wait.
    pub(crate) fn try_register(&self, remote: Option<IpAddr>) -> Result<(), Duration> {
        self.try_register_at(remote, Instant::now())
    }

    /// Counts one registration from `remote` at `now`, or says how long to wait (until every
    /// spent count has a new window). A refused registration counts nowhere and adds no key.
    fn try_register_at(&self, remote: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let Config {
            per_address,
            per_prefix,
            window,
            global,
            global_window,
            max_tracked,
        } = self.config;
        let (address, prefix) = (remote.map(address_key), remote.map(prefix_key));
        // A poisoned lock only means another request panicked mid-update of plain counters.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let counts = &mut *counts;
        counts
            .addresses
            .make_room(address, now, window, max_tracked)?;
        counts
            .prefixes
            .make_room(prefix, now, window, max_tracked)?;
        let global_left = counts.global.roll(now, global_window);
        let (address_count, address_left) = counts.addresses.current(address, now, window);
        let (prefix_count, prefix_left) = counts.prefixes.current(prefix, now, window);
        let wait = [
            (address_count >= per_address).then_some(address_left),
            (prefix_count >= per_prefix).then_some(prefix_left),
            (counts.global.count >= global).then_some(global_left),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        counts.addresses.count(address, now);
        counts.prefixes.count(prefix, now);
        counts.global.count += 1;
        Ok(())
    }
}

/// The key an address is counted under: an IPv4 address itself, the /64 of an IPv6 address
/// (a host usually owns a whole /64); an IPv4-mapped IPv6 address is its IPv4 address.
fn address_key(ip: IpAddr) -> IpAddr {
    masked(ip, 32, 64)
}

/// The key an address's network is counted under: its IPv4 /24 or IPv6 /48.
fn prefix_key(ip: IpAddr) -> IpAddr {
    masked(ip, 24, 48)
}

/// `ip` with only its first `v4_bits` (IPv4, IPv4-mapped IPv6 included) or `v6_bits` (IPv6)
/// kept.
fn masked(ip: IpAddr, v4_bits: u32, v6_bits: u32) -> IpAddr {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                let mask = u128::MAX.checked_shl(128 - v6_bits).unwrap_or(0);
                return IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask));
            }
        },
    };
    let mask = u32::MAX.checked_shl(32 - v4_bits).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// Small limits: 2 per address, 3 per prefix, 10 overall.
    fn small(max_tracked: usize) -> RegistrationLimits {
        RegistrationLimits::new(Config {
            per_address: 2,
            per_prefix: 3,
            window: Duration::from_secs(3600),
            global: 10,
            global_window: Duration::from_secs(86_400),
            max_tracked,
        })
    }

    #[test]
    fn an_address_has_its_own_budget() {
        let limits = small(100);
        let now = Instant::now();
        assert!(limits.try_register_at(ip("192.0.2.1"), now).is_ok());
        assert!(limits.try_register_at(ip("192.0.2.1"), now).is_ok());
        let wait = limits.try_register_at(ip("192.0.2.1"), now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(3600));
        // Another address of the same /24 still has room in the prefix.
        assert!(limits.try_register_at(ip("192.0.2.2"), now).is_ok());
    }

    #[test]
    fn addresses_of_one_prefix_share_its_budget() {
        let limits = small(100);
        let now = Instant::now();
        for host in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            assert!(limits.try_register_at(ip(host), now).is_ok(), "{host}");
        }
        // A fresh address, but its /24 has spent its 3.
        assert!(limits.try_register_at(ip("192.0.2.200"), now).is_err());
        // The refusals counted nowhere: another /24 has its whole budget.
        for host in ["198.51.100.1", "198.51.100.1", "198.51.100.2"] {
            assert!(limits.try_register_at(ip(host), now).is_ok(), "{host}");
        }
        assert!(limits.try_register_at(ip("198.51.100.3"), now).is_err());
    }

    #[test]
    fn ipv6_is_counted_per_64_and_per_48() {
        let limits = small(100);
        let now = Instant::now();
        // Two addresses of one /64 are one address.
        assert!(limits.try_register_at(ip("2001:db8:1:1::1"), now).is_ok());
        assert!(limits.try_register_at(ip("2001:db8:1:1::2"), now).is_ok());
        assert!(limits.try_register_at(ip("2001:db8:1:1::3"), now).is_err());
        // Another /64 of the same /48 has one left of the prefix's 3.
        assert!(limits.try_register_at(ip("2001:db8:1:2::1"), now).is_ok());
        assert!(limits.try_register_at(ip("2001:db8:1:3::1"), now).is_err());
        // Another /48 is independent.
        assert!(limits.try_register_at(ip("2001:db8:2:1::1"), now).is_ok());
        // An IPv4-mapped address counts as its IPv4 address.
        assert!(limits.try_register_at(ip("::ffff:192.0.2.1"), now).is_ok());
        assert!(limits.try_register_at(ip("192.0.2.1"), now).is_ok());
        assert!(limits.try_register_at(ip("::ffff:192.0.2.1"), now).is_err());
    }

    #[test]
    fn the_global_cap_holds_whatever_the_prefixes() {
        let limits = small(100);
        let now = Instant::now();
        for i in 1..=10 {
            assert!(
                limits
                    .try_register_at(ip(&format!("10.{i}.0.1")), now)
                    .is_ok()
            );
        }
        // The global window started when the limits were made, a moment before `now`.
        let wait = limits.try_register_at(ip("10.99.0.1"), now).unwrap_err();
        assert!(
            wait <= Duration::from_secs(86_400) && wait > Duration::from_secs(86_390),
            "{wait:?}"
        );
        // After a day everything starts again.
        let later = now + Duration::from_secs(86_400);
        assert!(limits.try_register_at(ip("10.99.0.1"), later).is_ok());
    }

    #[test]
    fn windows_restart() {
        let limits = small(100);
        let now = Instant::now();
        assert!(limits.try_register_at(ip("192.0.2.1"), now).is_ok());
        assert!(limits.try_register_at(ip("192.0.2.1"), now).is_ok());
        let later = now + Duration::from_secs(1800);
        assert_eq!(
            limits.try_register_at(ip("192.0.2.1"), later).unwrap_err(),
            Duration::from_secs(1800)
        );
        let next_hour = now + Duration::from_secs(3600);
        assert!(limits.try_register_at(ip("192.0.2.1"), next_hour).is_ok());
    }

    #[test]
    fn full_tables_refuse_new_keys_instead_of_growing() {
        let limits = small(2);
        let now = Instant::now();
        assert!(limits.try_register_at(ip("192.0.2.1"), now).is_ok());
        assert!(limits.try_register_at(ip("198.51.100.1"), now).is_ok());
        // A third prefix does not fit, and nothing stale can be swept.
        let later = now + Duration::from_secs(600);
        let wait = limits
            .try_register_at(ip("203.0.113.1"), later)
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(3000), "the earliest window's end");
        // Tracked keys still register.
        assert!(limits.try_register_at(ip("192.0.2.1"), later).is_ok());
        {
            let counts = limits.counts.lock().unwrap();
            assert_eq!(counts.addresses.windows.len(), 2);
            assert_eq!(counts.prefixes.windows.len(), 2);
        }
        // Once the windows have passed, they are swept to make room.
        let next_hour = now + Duration::from_secs(3600);
        assert!(limits.try_register_at(ip("203.0.113.1"), next_hour).is_ok());
        let counts = limits.counts.lock().unwrap();
        assert_eq!(counts.addresses.windows.len(), 1);
    }

    #[test]
    fn unknown_peers_share_one_budget() {
        let limits = small(100);
        let now = Instant::now();
        assert!(limits.try_register_at(None, now).is_ok());
        assert!(limits.try_register_at(None, now).is_ok());
        assert!(limits.try_register_at(None, now).is_err());
    }

    #[test]
    fn keys_are_prefixes() {
        let key = |text: &str| address_key(text.parse().unwrap()).to_string();
        let net = |text: &str| prefix_key(text.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.77"), "192.0.2.77");
        assert_eq!(net("192.0.2.77"), "192.0.2.0");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1::");
        assert_eq!(key("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(net("::ffff:192.0.2.1"), "192.0.2.0");
    }
}
