//! The flow table against a plain model (a list in order of activity), and the exchange
//! counting that ends a flow at its replies.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

fn client(n: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 1000 + n)
}

#[test]
fn a_flow_is_found_by_its_client_and_touched_by_its_id() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(4);
    let (a, evicted) = table.insert(client(1), "a", t0);
    assert!(evicted.is_none());
    assert_eq!(table.find(&client(1)), Some(a));
    assert_eq!(table.find(&client(2)), None);
    assert_eq!(table.get_mut(a), Some(&mut "a"));
    assert_eq!(table.client(a), Some(client(1)));
    assert!(table.touch(a, t0 + Duration::from_secs(1)));
    assert_eq!(table.len(), 1);
}

#[test]
fn flows_idle_for_the_timeout_expire_oldest_first_and_activity_keeps_a_flow() {
    let t0 = Instant::now();
    let idle = Duration::from_secs(30);
    let mut table = FlowTable::new(16);
    let (a, _) = table.insert(client(1), 1, t0);
    let (_b, _) = table.insert(client(2), 2, t0 + Duration::from_secs(1));
    table.insert(client(3), 3, t0 + Duration::from_secs(2));
    // The first client keeps talking: the others fall idle before it.
    table.touch(a, t0 + Duration::from_secs(10));
    assert_eq!(table.next_expiry(idle), Some(t0 + Duration::from_secs(31)));
    let at = t0 + Duration::from_secs(35);
    assert_eq!(table.pop_expired(at, idle), Some((client(2), 2)));
    assert_eq!(table.pop_expired(at, idle), Some((client(3), 3)));
    assert_eq!(table.pop_expired(at, idle), None, "the active one stays");
    assert_eq!(
        table.pop_expired(t0 + Duration::from_secs(40), idle),
        Some((client(1), 1))
    );
    assert!(table.is_empty());
    assert_eq!(table.next_expiry(idle), None);
}

#[test]
fn a_full_table_makes_room_by_ending_the_quietest_flow() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(2);
    let (a, _) = table.insert(client(1), 1, t0);
    table.insert(client(2), 2, t0);
    table.touch(a, t0 + Duration::from_millis(1));
    let (_, evicted) = table.insert(client(3), 3, t0 + Duration::from_millis(2));
    assert_eq!(evicted, Some((client(2), 2)));
    assert_eq!(table.len(), 2);
    assert!(table.find(&client(1)).is_some());
}

#[test]
fn an_id_of_an_ended_flow_names_nothing_even_when_its_slot_is_reused() {
    let t0 = Instant::now();
    let mut table = FlowTable::new(4);
    let (a, _) = table.insert(client(1), 1, t0);
    assert_eq!(table.remove(a), Some((client(1), 1)));
    let (b, _) = table.insert(client(2), 2, t0);
    assert_ne!(a, b);
    assert_eq!(table.get_mut(a), None);
    assert_eq!(table.client(a), None);
    assert!(!table.touch(a, t0));
    assert_eq!(table.remove(a), None);
    assert_eq!(table.get_mut(b), Some(&mut 2));
    assert_eq!(FlowId::from_u64(b.to_u64()), b);
}

#[test]
fn a_flow_ends_when_every_request_has_its_replies() {
    let mut dns = Exchange::new(1);
    dns.request();
    assert!(!dns.complete());
    assert!(dns.reply(), "one answer for one query");
    let mut pipelined = Exchange::new(1);
    pipelined.request();
    pipelined.request();
    assert!(!pipelined.reply(), "the second query is still owed");
    assert!(pipelined.reply());
    let mut two = Exchange::new(2);
    two.request();
    assert!(!two.reply());
    assert!(two.reply());
    let mut open = Exchange::new(0);
    open.request();
    assert!(!open.reply(), "without `responses` a flow only idles out");
}

#[derive(Debug, Clone)]
enum Op {
    Datagram { client: u16, at: u64 },
    Expire { at: u64 },
    Remove { client: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u16..40, 0u64..50).prop_map(|(client, at)| Op::Datagram { client, at }),
        1 => (0u64..50).prop_map(|at| Op::Expire { at }),
        1 => (0u16..40).prop_map(|client| Op::Remove { client }),
    ]
}

proptest! {
    /// Against a model, a list from least to most recently active: the table holds the same
    /// flows with the same values, never more than its capacity, evicts and expires the same
    /// ones, and every id it handed out for an ended flow names nothing.
    #[test]
    fn the_table_behaves_as_a_bounded_list_in_order_of_activity(
        capacity in 1usize..12,
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let t0 = Instant::now();
        let idle = Duration::from_millis(20);
        let mut table = FlowTable::new(capacity);
        let mut model: Vec<(SocketAddr, u64, Instant)> = Vec::new();
        let mut ended = Vec::new();
        let mut now = t0;
        let mut serial = 0u64;
        for op in ops {
            match op {
                Op::Datagram { client: c, at } => {
                    now = now.max(t0 + Duration::from_millis(at));
                    let key = client(c);
                    if let Some(id) = table.find(&key) {
                        prop_assert!(table.touch(id, now));
                        let i = model.iter().position(|(k, ..)| *k == key).unwrap();
                        let (k, v, _) = model.remove(i);
                        model.push((k, v, now));
                    } else {
                        prop_assert!(model.iter().all(|(k, ..)| *k != key));
                        serial += 1;
                        let (_, evicted) = table.insert(key, serial, now);
                        let expected = (model.len() >= capacity).then(|| model.remove(0));
                        prop_assert_eq!(evicted, expected.map(|(k, v, _)| (k, v)));
                        model.push((key, serial, now));
                    }
                }
                Op::Expire { at } => {
                    now = now.max(t0 + Duration::from_millis(at));
                    while let Some((k, v)) = table.pop_expired(now, idle) {
                        let (mk, mv, last) = model.remove(0);
                        prop_assert_eq!((k, v), (mk, mv));
                        prop_assert!(now.duration_since(last) >= idle);
                    }
                    if let Some((_, _, last)) = model.first() {
                        prop_assert!(now.duration_since(*last) < idle);
                    }
                }
                Op::Remove { client: c } => {
                    let key = client(c);
                    match table.find(&key) {
                        Some(id) => {
                            let i = model.iter().position(|(k, ..)| *k == key).unwrap();
                            let (k, v, _) = model.remove(i);
                            prop_assert_eq!(table.remove(id), Some((k, v)));
                            ended.push(id);
                        }
                        None => prop_assert!(model.iter().all(|(k, ..)| *k != key)),
                    }
                }
            }
            prop_assert!(table.len() <= capacity);
            prop_assert_eq!(table.len(), model.len());
            for id in &ended {
                prop_assert!(table.client(*id).is_none());
            }
        }
        // What is left comes out oldest first.
        let mut left = Vec::new();
        while let Some((k, v)) = table.pop_oldest() {
            left.push((k, v));
        }
        let expected: Vec<_> = model.into_iter().map(|(k, v, _)| (k, v)).collect();
        prop_assert_eq!(left, expected);
    }
}
