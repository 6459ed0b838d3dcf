//! Who may hold a connection to an admin listener: a pure table of the open connections, each
//! either *waiting* (for a request head, its first or the next on a kept-alive connection) or
//! *busy* (its request being answered), capped in all and per source address.
//!
//! At a cap the oldest waiting connection makes room for the new one, as a proxy sheds its
//! least useful connection rather than refuse a fresh one: the oldest waiting connection of
//! the same source when that source is at its cap, else the oldest waiting one of all. A flood
//! of idle or slow connections then costs the flood itself, never the next health check; only
//! when every connection is busy is a newcomer refused. No clock: "oldest" is the order in
//! which connections started waiting.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// How many connections a listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Open connections in all (at least 1).
    pub connections: usize,
    /// Open connections from one source address (at least 1).
    pub per_source: usize,
}

/// A connection's number in the table, never reused.
pub type Id = u64;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source holds `per_source` connections, all busy.
    SourceFull,
    /// The listener holds `connections` connections, all busy.
    Full,
}

/// The open connections of one listener; `T` is what the shell needs to close one (a
/// cancellation handle), handed back when a connection is evicted.
#[derive(Debug)]
pub struct Admission<T> {
    budget: Budget,
    /// Source of ids and of the waiting order.
    tick: u64,
    connections: HashMap<Id, Connection<T>>,
    /// Waiting connections, oldest first: (since, id).
    waiting: BTreeSet<(u64, Id)>,
    sources: HashMap<IpAddr, Source>,
}

#[derive(Debug)]
struct Connection<T> {
    source: IpAddr,
    handle: T,
    /// When it started waiting; `None` while busy.
    waiting_since: Option<u64>,
}

#[derive(Debug, Default)]
struct Source {
    open: usize,
    /// This source's waiting connections, oldest first.
    waiting: BTreeSet<(u64, Id)>,
}

impl<T> Admission<T> {
    pub fn new(budget: Budget) -> Self {
        assert!(
            budget.connections >= 1 && budget.per_source >= 1,
            "{budget:?}"
        );
        Self {
            budget,
            tick: 0,
            connections: HashMap::new(),
            waiting: BTreeSet::new(),
            sources: HashMap::new(),
        }
    }

    /// Admits a new connection from `source`, waiting for its first request. At a cap the
    /// oldest waiting connection (of this source, or of all) is removed to make room and its
    /// handle returned, for the caller to close it.
    pub fn admit(&mut self, source: IpAddr, handle: T) -> Result<(Id, Option<T>), Refused> {
        let from_source = self.sources.get(&source).map_or(0, |s| s.open);
        let victim = if from_source >= self.budget.per_source {
            let oldest = self.sources.get(&source).and_then(|s| s.waiting.first());
            Some(oldest.ok_or(Refused::SourceFull)?.1)
        } else if self.connections.len() >= self.budget.connections {
            Some(self.waiting.first().ok_or(Refused::Full)?.1)
        } else {
            None
        };
        // One eviction always suffices: it frees a place in all and, when it had to, one of
        // this source's.
        let evicted = victim.and_then(|id| self.closed(id));
        let id = self.next_tick();
        self.connections.insert(
            id,
            Connection {
                source,
                handle,
                waiting_since: None,
            },
        );
        self.sources.entry(source).or_default().open += 1;
        self.start_waiting(id);
        Ok((id, evicted))
    }

    /// The connection's request is being answered: it may not be evicted.
    pub fn busy(&mut self, id: Id) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        if let Some(since) = connection.waiting_since.take() {
            self.waiting.remove(&(since, id));
            if let Some(source) = self.sources.get_mut(&connection.source) {
                source.waiting.remove(&(since, id));
            }
        }
    }

    /// The connection's answer is out: it waits for its next request, the newest waiter.
    pub fn waiting(&mut self, id: Id) {
        self.busy(id);
        self.start_waiting(id);
    }

    /// The connection closed (or was evicted): forgets it, returning its handle if it was
    /// still in the table.
    pub fn closed(&mut self, id: Id) -> Option<T> {
        self.busy(id);
        let connection = self.connections.remove(&id)?;
        if let Some(source) = self.sources.get_mut(&connection.source) {
            source.open -= 1;
            if source.open == 0 {
                self.sources.remove(&connection.source);
            }
        }
        Some(connection.handle)
    }

    /// The handle of an open connection, to set it once the caller has one.
    pub fn handle_mut(&mut self, id: Id) -> Option<&mut T> {
        self.connections.get_mut(&id).map(|c| &mut c.handle)
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.connections.len()
    }

    /// Open connections from `source`.
    pub fn open_from(&self, source: IpAddr) -> usize {
        self.sources.get(&source).map_or(0, |s| s.open)
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn start_waiting(&mut self, id: Id) {
        let since = self.next_tick();
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        connection.waiting_since = Some(since);
        self.waiting.insert((since, id));
        if let Some(source) = self.sources.get_mut(&connection.source) {
            source.waiting.insert((since, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn table(connections: usize, per_source: usize) -> Admission<&'static str> {
        Admission::new(Budget {
            connections,
            per_source,
        })
    }

    #[test]
    fn below_the_caps_everyone_is_admitted_and_nobody_evicted() {
        let mut t = table(3, 2);
        assert!(matches!(t.admit(ip(1), "a"), Ok((_, None))));
        assert!(matches!(t.admit(ip(1), "b"), Ok((_, None))));
        assert!(matches!(t.admit(ip(2), "c"), Ok((_, None))));
        assert_eq!(
            (t.open(), t.open_from(ip(1)), t.open_from(ip(2))),
            (3, 2, 1)
        );
    }

    #[test]
    fn a_source_at_its_cap_gives_up_its_own_oldest_waiting_connection() {
        let mut t = table(10, 2);
        let (a, _) = t.admit(ip(1), "a").unwrap();
        t.admit(ip(2), "other").unwrap();
        t.admit(ip(1), "b").unwrap();
        // "a" waited longest, but was busy and is waiting again: now "b" is the oldest.
        t.busy(a);
        t.waiting(a);
        assert_eq!(t.admit(ip(1), "c").unwrap().1, Some("b"));
        assert_eq!(t.open_from(ip(1)), 2);
        assert_eq!(t.open_from(ip(2)), 1, "another source is never touched");
    }

    #[test]
    fn a_source_whose_connections_are_all_busy_is_refused() {
        let mut t = table(10, 2);
        let (a, _) = t.admit(ip(1), "a").unwrap();
        let (b, _) = t.admit(ip(1), "b").unwrap();
        t.busy(a);
        t.busy(b);
        assert_eq!(t.admit(ip(1), "c"), Err(Refused::SourceFull));
        assert_eq!(t.open_from(ip(1)), 2);
        assert!(t.admit(ip(2), "d").is_ok(), "other sources still get in");
    }

    #[test]
    fn a_full_listener_evicts_the_oldest_waiting_connection_of_any_source() {
        let mut t = table(3, 3);
        let (a, _) = t.admit(ip(1), "a").unwrap();
        t.admit(ip(2), "b").unwrap();
        t.admit(ip(3), "c").unwrap();
        t.busy(a);
        assert_eq!(t.admit(ip(4), "d").unwrap().1, Some("b"));
        assert_eq!(t.open(), 3);
        assert_eq!(t.open_from(ip(2)), 0);
        assert_eq!(t.admit(ip(4), "e").unwrap().1, Some("c"));
        assert_eq!(t.admit(ip(5), "f").unwrap().1, Some("d"));
    }

    #[test]
    fn a_full_listener_with_every_connection_busy_refuses() {
        let mut t = table(2, 2);
        let (a, _) = t.admit(ip(1), "a").unwrap();
        let (b, _) = t.admit(ip(2), "b").unwrap();
        t.busy(a);
        t.busy(b);
        assert_eq!(t.admit(ip(3), "c"), Err(Refused::Full));
        t.waiting(b);
        assert_eq!(t.admit(ip(3), "c").unwrap().1, Some("b"));
    }

    #[test]
    fn closing_frees_the_places_and_an_evicted_connection_closes_as_a_no_op() {
        let mut t = table(2, 1);
        let (a, _) = t.admit(ip(1), "a").unwrap();
        let (b, evicted) = t.admit(ip(1), "b").unwrap();
        assert_eq!(evicted, Some("a"));
        assert_eq!(t.closed(a), None, "already gone");
        assert_eq!(t.open(), 1);
        assert_eq!(t.closed(b), Some("b"));
        assert_eq!((t.open(), t.open_from(ip(1))), (0, 0));
        assert!(t.sources.is_empty() && t.waiting.is_empty());
    }

    #[test]
    fn marks_for_unknown_connections_change_nothing() {
        let mut t = table(2, 2);
        t.busy(7);
        t.waiting(7);
        assert_eq!(t.closed(7), None);
        assert_eq!(t.open(), 0);
        assert!(t.waiting.is_empty());
    }

    /// Whatever happens, the counts agree with the table and a cap is never exceeded.
    #[test]
    fn caps_hold_under_any_sequence() {
        let mut t = table(5, 2);
        let mut open: Vec<Id> = Vec::new();
        let mut rng = fastrand::Rng::with_seed(19);
        for _ in 0..10_000 {
            match rng.u8(0..4) {
                0 => {
                    if let Ok((id, evicted)) = t.admit(ip(rng.u8(0..4)), "x") {
                        open.push(id);
                        if evicted.is_some() {
                            open.retain(|&o| t.connections.contains_key(&o));
                        }
                    }
                }
                1 if !open.is_empty() => t.busy(open[rng.usize(0..open.len())]),
                2 if !open.is_empty() => t.waiting(open[rng.usize(0..open.len())]),
                3 if !open.is_empty() => {
                    let id = open.swap_remove(rng.usize(0..open.len()));
                    assert!(t.closed(id).is_some());
                }
                _ => {}
            }
            assert!(t.open() <= 5);
            assert_eq!(t.open(), open.len());
            for s in 0..4 {
                assert!(t.open_from(ip(s)) <= 2);
            }
            let waiting = t.connections.values().filter(|c| c.waiting_since.is_some());
            assert_eq!(waiting.count(), t.waiting.len());
            let per_source: usize = t.sources.values().map(|s| s.waiting.len()).sum();
            assert_eq!(per_source, t.waiting.len());
        }
    }
}
