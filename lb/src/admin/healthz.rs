//! The answer of `/healthz`: is this node the one traffic should go to.
//!
//! Pure: decided from state the node already has (VRRP roles and pool health), never by
//! probing anything inline, so a target group's check is answered in microseconds however busy
//! or sick the backends are.

use vrrp::State;

use crate::config::TrackPool;
use crate::health::PoolsHealth;

/// The three answers, with the one-word bodies the endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 200: master of every instance, and every tracked pool is healthy enough.
    Primary,
    /// 503: a backup (or still starting).
    Secondary,
    /// 503: master of every instance, but an application bound to one has not passed its
    /// checks yet: a target group must not send clients to it.
    Starting,
    /// 503: an instance is in FAULT, or this master cannot reach enough backends.
    Fault,
    /// 503: the node is shutting down (draining).
    Stopping,
}

impl Verdict {
    pub fn body(self) -> &'static str {
        match self {
            Verdict::Primary => "primary",
            Verdict::Secondary => "secondary",
            Verdict::Starting => "starting",
            Verdict::Fault => "fault",
            Verdict::Stopping => "stopping",
        }
    }

    pub fn healthy(self) -> bool {
        self == Verdict::Primary
    }
}

/// `instances`: each VRRP instance's state and tracked pools. A node without any is a
/// standalone node, always primary. `apps`: the state of each application bound to an
/// instance (`run_on = "primary"`).
pub fn verdict(
    instances: &[(State, &[TrackPool])],
    pools: &PoolsHealth,
    apps: &[apps::State],
) -> Verdict {
    if instances.iter().any(|(state, _)| *state == State::Fault) {
        return Verdict::Fault;
    }
    if !instances.iter().all(|(state, _)| *state == State::Master) {
        return Verdict::Secondary;
    }
    let starved = instances
        .iter()
        .flat_map(|(_, track)| track.iter())
        .any(|t| t.starved(pools));
    if starved || apps.contains(&apps::State::Failed) {
        Verdict::Fault
    } else if apps.iter().any(|s| *s != apps::State::Running) {
        Verdict::Starting
    } else {
        Verdict::Primary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::PoolHealth;

    fn pools(usable: usize) -> PoolsHealth {
        [("web".to_owned(), PoolHealth { usable, total: 2 })].into()
    }

    fn web(min_healthy: u32) -> Vec<TrackPool> {
        vec![TrackPool {
            pool: "web".into(),
            min_healthy,
            weight: 50,
        }]
    }

    #[test]
    fn a_standalone_node_is_primary() {
        assert_eq!(verdict(&[], &pools(0), &[]), Verdict::Primary);
    }

    #[test]
    fn only_a_master_of_every_instance_is_primary() {
        let t = web(1);
        assert_eq!(
            verdict(&[(State::Master, &t)], &pools(2), &[]),
            Verdict::Primary
        );
        assert_eq!(
            verdict(&[(State::Backup, &t)], &pools(2), &[]),
            Verdict::Secondary
        );
        assert_eq!(
            verdict(&[(State::Initialize, &t)], &pools(2), &[]),
            Verdict::Secondary
        );
        assert_eq!(
            verdict(&[(State::Master, &t), (State::Backup, &t)], &pools(2), &[]),
            Verdict::Secondary
        );
        assert_eq!(
            verdict(&[(State::Master, &t), (State::Fault, &t)], &pools(2), &[]),
            Verdict::Fault
        );
    }

    #[test]
    fn a_master_whose_applications_have_not_passed_their_checks_is_starting() {
        use apps::State as App;
        let t = web(1);
        let master = [(State::Master, t.as_slice())];
        assert_eq!(
            verdict(&master, &pools(2), &[App::Running]),
            Verdict::Primary
        );
        for app in [App::Stopped, App::Starting, App::Restarting] {
            assert_eq!(
                verdict(&master, &pools(2), &[App::Running, app]),
                Verdict::Starting,
                "{app:?}"
            );
        }
        assert_eq!(verdict(&master, &pools(2), &[App::Failed]), Verdict::Fault);
        assert_eq!(
            verdict(&[(State::Backup, t.as_slice())], &pools(2), &[App::Stopped]),
            Verdict::Secondary,
            "a backup runs no mirror application and is secondary"
        );
        assert!(!Verdict::Starting.healthy());
        assert_eq!(Verdict::Starting.body(), "starting");
    }

    #[test]
    fn a_master_without_enough_backends_reports_fault() {
        let t = web(2);
        assert_eq!(
            verdict(&[(State::Master, &t)], &pools(1), &[]),
            Verdict::Fault
        );
        assert_eq!(
            verdict(&[(State::Master, &t)], &pools(2), &[]),
            Verdict::Primary
        );
        assert!(Verdict::Primary.healthy() && !Verdict::Fault.healthy());
    }
}
