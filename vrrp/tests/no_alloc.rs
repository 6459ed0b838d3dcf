//! The pure parts of an instance's per-advert path allocate nothing once warm: the machine's
//! handling of an advert (backup) and of its Adver_Timer (master) into a kept vector, the
//! encoding of an advert into a kept buffer, the judging of a received one, and the recording
//! of what is measured. Counted by `syscall`'s allocator that counts this thread's allocations.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use syscall::alloc_count::{CountingAllocator, allocations};
use tokio::time::Instant;
use vrrp::accept::{Acceptor, Received, Verdict};
use vrrp::packet::{self, Advert};
use vrrp::timing::Timing;
use vrrp::{Input, Machine, MachineConfig, State, Version};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MASTER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const BACKUP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));

fn config(priority: u8, me: IpAddr) -> MachineConfig {
    MachineConfig {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_interval: Duration::from_millis(10),
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept_mode: false,
        primary_address: me,
    }
}

#[test]
fn the_per_advert_path_allocates_nothing_once_warm() {
    let before = allocations();
    let counted = std::hint::black_box(vec![1u8; 16]);
    assert_eq!(allocations() - before, 1, "the counter counts");
    drop(counted);
    let t0 = Instant::now();
    let interval = Duration::from_millis(10);
    let mut master = Machine::new(config(200, MASTER)).unwrap();
    let mut backup = Machine::new(config(100, BACKUP)).unwrap();
    let mut actions = Vec::with_capacity(8);
    master.handle_into(t0, Input::Startup, &mut actions);
    backup.handle_into(t0, Input::Startup, &mut actions);
    actions.clear();
    let due = master.next_timeout().unwrap();
    master.handle_into(due, Input::Timeout, &mut actions);
    assert_eq!(master.state(), State::Master);
    actions.clear();
    let acceptor = Acceptor {
        own: BACKUP,
        peers: Vec::new(),
        vrid: 51,
        version: Version::V3,
    };
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 200,
        interval,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
    };
    let mut bytes = Vec::new();
    let mut timing = Timing::default();

    let mut round = |k: u32, actions: &mut Vec<_>, bytes: &mut Vec<u8>, timing: &mut Timing| {
        // The master's Adver_Timer: one advert to send, encoded.
        let due = master.next_timeout().unwrap();
        master.handle_into(due, Input::Timeout, actions);
        assert_eq!(actions.len(), 1, "{actions:?}");
        actions.clear();
        packet::encode_into(&advert, MASTER, GROUP, bytes).unwrap();
        timing.record_send_lateness(due, Duration::from_micros(300));
        // The backup receives it, judges it and hears it.
        let verdict = acceptor.judge(Received {
            src: MASTER,
            dst: GROUP,
            ttl: 255,
            payload: bytes,
        });
        let Verdict::Advert {
            src,
            priority,
            interval,
        } = verdict
        else {
            panic!("{verdict:?}")
        };
        let arrived = t0 + interval * (k + 1);
        let input = Input::Advert {
            src,
            priority,
            interval,
        };
        backup.handle_into(arrived, input, actions);
        assert!(actions.is_empty());
        if let Some(margin) = backup.master_down_margin() {
            timing.record_margin(arrived, margin, backup.master_down_interval());
        }
    };
    round(0, &mut actions, &mut bytes, &mut timing);
    let before = allocations();
    for k in 1..1000 {
        round(k, &mut actions, &mut bytes, &mut timing);
    }
    assert_eq!(allocations() - before, 0, "allocations in 999 rounds");
    assert_eq!(backup.state(), State::Backup);
    assert_eq!(timing.master_down_margin.count(), 999);
}
