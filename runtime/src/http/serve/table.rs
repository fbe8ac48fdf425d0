//! Open connections counted in total and per address, for the connection caps.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use super::CapExempt;

/// The open connections: how many in total and from each address. An address's entry goes
/// when its last connection closes, so the table never holds more entries than there are
/// open connections, and so never more than the total cap.
pub(super) struct ConnectionTable {
    max_total: usize,
    max_per_address: usize,
    exempt: Option<CapExempt>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    // std's `RandomState` keys the hash per process, so peers cannot aim for collisions.
    per_address: HashMap<AddressKey, usize>,
}

/// What a connection counts against: an IPv4 address, or an IPv6 /64 (one host usually owns
/// a whole /64, so counting single IPv6 addresses would let it open 2^64 times the cap).
/// IPv4-mapped IPv6 addresses (from a dual-stack listener) count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddressKey {
    V4(u32),
    V6(u64),
}

impl AddressKey {
    fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(v4) => Self::V4(v4.to_bits()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.to_bits()),
                // The top 64 bits: the network.
                None => Self::V6((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// As many connections are open as the server takes.
    Total,
    /// As many connections are open from this address as one address may have.
    PerAddress,
}

impl Refusal {
    /// The setting that refused it, for the log.
    pub(super) fn cap_name(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }
}

impl ConnectionTable {
    /// An empty table with these caps; `exempt` peers may exceed the per-address cap.
    pub(super) fn new(max_total: usize, max_per_address: usize, exempt: Option<CapExempt>) -> Self {
        Self {
            max_total,
            max_per_address,
            exempt,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Counts a new connection from `peer`, or refuses it when a cap is reached. The
    /// connection is counted until the returned permit is dropped.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let key = AddressKey::of(peer);
        let mut guard = lock(&self.counts);
        let counts = &mut *guard;
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let count = counts.per_address.entry(key).or_insert(0);
        // A fresh entry holds 0, below any cap (at least 1), so a refusal never leaves an
        // empty entry behind. The exemption is asked only over the cap: most connections
        // never pay for it.
        if *count >= self.max_per_address && !self.exempt.as_ref().is_some_and(|f| f(peer)) {
            return Err(Refusal::PerAddress);
        }
        *count += 1;
        counts.total += 1;
        Ok(Permit {
            table: self.clone(),
            key,
        })
    }

    /// Connections open in total and from `peer`'s address (for tests).
    #[cfg(test)]
    fn open(&self, peer: IpAddr) -> (usize, usize, usize) {
        let counts = lock(&self.counts);
        let from_peer = counts
            .per_address
            .get(&AddressKey::of(peer))
            .copied()
            .unwrap_or(0);
        (counts.total, from_peer, counts.per_address.len())
    }
}

/// One open connection, counted in its table until dropped.
pub(super) struct Permit {
    table: Arc<ConnectionTable>,
    key: AddressKey,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut guard = lock(&self.table.counts);
        let counts = &mut *guard;
        counts.total = counts.total.saturating_sub(1);
        if let Entry::Occupied(mut entry) = counts.per_address.entry(self.key) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
        // After a flood from many addresses the map keeps its capacity; give it back once it
        // is mostly empty (rare: the capacity at least halves each time).
        let map = &mut counts.per_address;
        if map.capacity() > 1024 && map.len() * 8 < map.capacity() {
            map.shrink_to(map.len() * 2);
        }
    }
}

fn lock(mutex: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    // Every update under this lock is a few integer writes and a map insert or remove that
    // cannot be left half done; a poisoned lock (a panicking exemption hook) is still
    // consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_has_its_own_cap_and_entries_go_with_their_last_connection() {
        let table = Arc::new(ConnectionTable::new(100, 2, None));
        let a1 = table.admit(ip("192.0.2.1")).unwrap();
        let a2 = table.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            table.admit(ip("192.0.2.1")).err(),
            Some(Refusal::PerAddress)
        );
        let b = table.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(table.open(ip("192.0.2.1")), (3, 2, 2));
        drop(a1);
        let a3 = table.admit(ip("192.0.2.1")).unwrap();
        drop((a2, a3, b));
        assert_eq!(table.open(ip("192.0.2.1")), (0, 0, 0));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let table = Arc::new(ConnectionTable::new(100, 2, None));
        let _a = table.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = table.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(table.admit(ip("2001:db8:1:2:abcd::1")).is_err());
        assert!(table.admit(ip("2001:db8:1:3::1")).is_ok());
        let _c = table.admit(ip("192.0.2.7")).unwrap();
        let _d = table.admit(ip("::ffff:192.0.2.7")).unwrap();
        assert!(table.admit(ip("192.0.2.7")).is_err());
    }

    #[test]
    fn the_total_cap_holds_for_everyone() {
        let table = Arc::new(ConnectionTable::new(2, 10, None));
        let _a = table.admit(ip("192.0.2.1")).unwrap();
        let _b = table.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(table.admit(ip("192.0.2.3")).err(), Some(Refusal::Total));
        assert_eq!(table.open(ip("192.0.2.3")), (2, 0, 2));
    }

    #[test]
    fn exempt_peers_pass_the_per_address_cap_but_not_the_total() {
        let exempt: CapExempt =
            Arc::new(|peer: IpAddr| peer == "10.0.0.1".parse::<IpAddr>().unwrap());
        let table = Arc::new(ConnectionTable::new(5, 1, Some(exempt)));
        let permits: Vec<_> = (0..5)
            .map(|_| table.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(table.admit(ip("10.0.0.1")).err(), Some(Refusal::Total));
        drop(permits);
        let _other = table.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(table.admit(ip("10.0.0.2")).err(), Some(Refusal::PerAddress));
    }

    #[test]
    fn the_map_gives_back_its_capacity_after_a_flood() {
        let table = Arc::new(ConnectionTable::new(100_000, 1, None));
        let flood: Vec<_> = (0..20_000u32)
            .map(|i| table.admit(IpAddr::from(i.to_be_bytes())).unwrap())
            .collect();
        drop(flood);
        let counts = lock(&table.counts);
        assert!(
            counts.per_address.capacity() <= 2048,
            "{}",
            counts.per_address.capacity()
        );
    }
}
