//! The flow table of one data thread's UDP service socket: pure, bounded, on an injected clock.
//!
//! A flow is a client address and port. The table maps it to the flow's state (`V`: in the
//! data path, the backend socket and counters), keeps flows in order of their last datagram
//! either way, and so finds the idle ones from the old end in time proportional to how many
//! have expired. It never holds more than its capacity: when a new client arrives at a full
//! table, the flow that has been quiet longest makes room (least recently used), so a flood
//! from spoofed sources churns the table but cannot grow it, and what a busy client does
//! keeps its flow at the young end.
//!
//! Flows are named outside the table by a [`FlowId`] (a slot and that slot's generation), so an
//! event for a flow that has since ended (a backend socket's readiness that was already queued)
//! finds nothing instead of another client's flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// The end of the recency list.
const NIL: u32 = u32::MAX;

/// A flow's name outside the table, packed in 64 bits (an epoll event's user data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId {
    slot: u32,
    generation: u32,
}

impl FlowId {
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    pub fn from_u64(packed: u64) -> Self {
        Self {
            slot: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }
}

#[derive(Debug)]
struct Entry<V> {
    key: SocketAddr,
    /// `None` while the slot is free.
    value: Option<V>,
    last: Instant,
    generation: u32,
    /// Towards the most recently active flow, and towards the least.
    newer: u32,
    older: u32,
}

/// Flows by client address, in order of activity, at most `capacity` of them.
#[derive(Debug)]
pub struct FlowTable<V> {
    index: HashMap<SocketAddr, u32>,
    entries: Vec<Entry<V>>,
    free: Vec<u32>,
    /// Most and least recently active.
    newest: u32,
    oldest: u32,
    capacity: usize,
}

impl<V> FlowTable<V> {
    /// An empty table that will hold at most `capacity` flows (at least one). Memory grows with
    /// the flows, not with the capacity.
    pub fn new(capacity: usize) -> Self {
        Self {
            index: HashMap::new(),
            entries: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            capacity: capacity.clamp(1, NIL as usize - 1),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The flow of `client`, if there is one.
    pub fn find(&self, client: &SocketAddr) -> Option<FlowId> {
        let slot = *self.index.get(client)?;
        Some(FlowId {
            slot,
            generation: self.entries[slot as usize].generation,
        })
    }

    /// The flow's state, if `id` still names a flow.
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut V> {
        let entry = self.entries.get_mut(id.slot as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        entry.value.as_mut()
    }

    /// The flow's client, if `id` still names a flow.
    pub fn client(&self, id: FlowId) -> Option<SocketAddr> {
        let entry = self.entries.get(id.slot as usize)?;
        (entry.generation == id.generation && entry.value.is_some()).then_some(entry.key)
    }

    /// A datagram of flow `id` moved at `now` (either way): it becomes the most recent.
    /// Returns false if `id` names no flow.
    pub fn touch(&mut self, id: FlowId, now: Instant) -> bool {
        if self.client(id).is_none() {
            return false;
        }
        self.unlink(id.slot);
        let entry = &mut self.entries[id.slot as usize];
        entry.last = entry.last.max(now);
        self.link_newest(id.slot);
        true
    }

    /// Starts a flow for `client` (which must have none) at `now`. At capacity the least
    /// recently active flow is removed first and returned with its client.
    pub fn insert(
        &mut self,
        client: SocketAddr,
        value: V,
        now: Instant,
    ) -> (FlowId, Option<(SocketAddr, V)>) {
        let replaced = self.find(&client).and_then(|id| self.remove(id));
        let evicted = if replaced.is_none() && self.len() >= self.capacity {
            self.pop_oldest()
        } else {
            replaced
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                let entry = &mut self.entries[slot as usize];
                entry.key = client;
                entry.value = Some(value);
                entry.last = now;
                slot
            }
            None => {
                let slot = self.entries.len() as u32;
                self.entries.push(Entry {
                    key: client,
                    value: Some(value),
                    last: now,
                    generation: 0,
                    newer: NIL,
                    older: NIL,
                });
                slot
            }
        };
        self.index.insert(client, slot);
        self.link_newest(slot);
        let id = FlowId {
            slot,
            generation: self.entries[slot as usize].generation,
        };
        (id, evicted)
    }

    /// Ends flow `id`: returns its client and state, or `None` if `id` names no flow.
    pub fn remove(&mut self, id: FlowId) -> Option<(SocketAddr, V)> {
        self.client(id)?;
        self.unlink(id.slot);
        let entry = &mut self.entries[id.slot as usize];
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        let key = entry.key;
        self.index.remove(&key);
        self.free.push(id.slot);
        Some((key, value))
    }

    /// Removes and returns one flow idle for `idle` or longer at `now` (the longest idle
    /// first), or `None` when there is none left.
    pub fn pop_expired(&mut self, now: Instant, idle: Duration) -> Option<(SocketAddr, V)> {
        let oldest = self.oldest;
        if oldest == NIL {
            return None;
        }
        let entry = &self.entries[oldest as usize];
        if now.saturating_duration_since(entry.last) < idle {
            return None;
        }
        self.pop_oldest()
    }

    /// Removes and returns the least recently active flow.
    pub fn pop_oldest(&mut self) -> Option<(SocketAddr, V)> {
        let oldest = self.oldest;
        if oldest == NIL {
            return None;
        }
        let id = FlowId {
            slot: oldest,
            generation: self.entries[oldest as usize].generation,
        };
        self.remove(id)
    }

    /// When the least recently active flow falls idle after `idle`, if there is a flow.
    pub fn next_expiry(&self, idle: Duration) -> Option<Instant> {
        let oldest = self.entries.get(self.oldest as usize)?;
        Some(oldest.last + idle)
    }

    fn unlink(&mut self, slot: u32) {
        let (newer, older) = {
            let e = &self.entries[slot as usize];
            (e.newer, e.older)
        };
        match newer {
            NIL => self.newest = older,
            n => self.entries[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.entries[o as usize].newer = newer,
        }
        let e = &mut self.entries[slot as usize];
        e.newer = NIL;
        e.older = NIL;
    }

    fn link_newest(&mut self, slot: u32) {
        let previous = self.newest;
        {
            let e = &mut self.entries[slot as usize];
            e.newer = NIL;
            e.older = previous;
        }
        match previous {
            NIL => self.oldest = slot,
            p => self.entries[p as usize].newer = slot,
        }
        self.newest = slot;
    }
}

/// What a flow has exchanged, and whether that ends it: with `responses = N`, a flow ends as
/// soon as the backend has sent N replies for every request the client sent (nginx's
/// `proxy_responses`), so a DNS flow ends at its answer instead of holding a socket for
/// `idle_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    requests: u64,
    replies: u64,
    /// Replies per request; 0: the flow ends only by idling.
    responses: u32,
}

impl Exchange {
    pub fn new(responses: u32) -> Self {
        Self {
            requests: 0,
            replies: 0,
            responses,
        }
    }

    /// A datagram from the client.
    pub fn request(&mut self) {
        self.requests = self.requests.saturating_add(1);
    }

    /// A datagram from the backend; true when the flow has had every reply it was owed.
    pub fn reply(&mut self) -> bool {
        self.replies = self.replies.saturating_add(1);
        self.complete()
    }

    /// Whether every request has its replies (never, without `responses`).
    pub fn complete(&self) -> bool {
        self.responses != 0
            && self.replies >= self.requests.saturating_mul(u64::from(self.responses))
    }
}

#[cfg(test)]
mod tests;
