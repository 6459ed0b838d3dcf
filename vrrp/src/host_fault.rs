//! Faults of the host rather than the election: the kernel refused an instance its raw socket
//! or its addresses (EPERM: the process lacks CAP_NET_RAW or CAP_NET_ADMIN), or changing a VIP
//! failed otherwise. Pure: it decides what is said, when the instance tries again and how; the
//! driver tries. Time is an argument, as in [`crate::machine`].
//!
//! A refusal does not pass by itself: a process lacks a capability until it is restarted with
//! it (or a security policy changes). Leaving FAULT to claim the VIPs again would only cycle
//! BACKUP -> MASTER -> FAULT, every Master_Down_Interval, running notify scripts and flipping
//! `/healthz` each time. So a refused instance stays in FAULT, says why once, and tests the
//! permission itself, quietly, after a backoff that doubles from [`RETRY_FIRST`] to
//! [`RETRY_MAX`] (and at once when asked: a reload). The test changes nothing the instance
//! would not change anyway: it opens the sockets, and deletes the VIPs, which the kernel checks
//! for the capability whether or not they are there. Only a passed test lets it leave FAULT.
//!
//! Any other failure to change a VIP may pass (the kernel short of memory, say). One to add a
//! VIP is retried through the election itself: the instance leaves FAULT after the backoff and
//! claims again. One to remove a VIP is retried by removing it, in FAULT. Either is logged when
//! it first shows or changes, not on every try.

use std::time::Duration;

use tokio::time::Instant;

/// The first retry comes this long after a failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The backoff doubles up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the host did not let an instance do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trouble {
    /// The raw VRRP socket (or the ARP / NA one) was refused: no CAP_NET_RAW.
    SocketsDenied,
    /// Adding or removing an address was refused: no CAP_NET_ADMIN.
    AddressesDenied,
    /// Adding a VIP failed, for another reason than a refusal.
    AddFailed,
    /// Removing a VIP failed, for another reason than a refusal: it may still be on the link.
    RemoveFailed,
}

impl Trouble {
    /// The capability whose lack the kernel's refusal means; `None` for a plain failure.
    pub fn capability(self) -> Option<&'static str> {
        match self {
            Trouble::SocketsDenied => Some("CAP_NET_RAW"),
            Trouble::AddressesDenied => Some("CAP_NET_ADMIN"),
            Trouble::AddFailed | Trouble::RemoveFailed => None,
        }
    }

    /// What was refused or failed, as a log line says it.
    pub fn action(self) -> &'static str {
        match self {
            Trouble::SocketsDenied => "opening the raw VRRP socket",
            Trouble::AddressesDenied => "changing addresses",
            Trouble::AddFailed => "adding a VIP",
            Trouble::RemoveFailed => "removing a VIP",
        }
    }

    /// How the instance tries again.
    pub fn retry(self) -> Retry {
        match self {
            Trouble::AddFailed => Retry::Claim,
            Trouble::SocketsDenied | Trouble::AddressesDenied | Trouble::RemoveFailed => {
                Retry::Probe
            }
        }
    }
}

/// A retry that has come due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Stay in FAULT and test: open what sockets are missing, delete the VIPs. Report the
    /// outcome with [`HostFault::failed`] or [`HostFault::lifted`].
    Probe,
    /// The trouble is set aside: leave FAULT, and let the election claim the VIPs again. A
    /// claim that fails again is [`HostFault::failed`]; one that succeeds, [`HostFault::claimed`].
    Claim,
}

/// One instance's host fault: the trouble that holds it in FAULT, if any, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFault {
    /// What holds the instance in FAULT now.
    trouble: Option<Trouble>,
    /// What was last said: the same trouble again is not said again until it has been lifted
    /// or a claim succeeded.
    reported: Option<Trouble>,
    /// The wait before the next retry after a failure.
    backoff: Duration,
    /// When the next retry is due, while there is trouble.
    retry_at: Option<Instant>,
}

impl Default for HostFault {
    fn default() -> Self {
        Self {
            trouble: None,
            reported: None,
            backoff: RETRY_FIRST,
            retry_at: None,
        }
    }
}

impl HostFault {
    /// Whether the instance must be in FAULT for the host's sake.
    pub fn is_faulty(&self) -> bool {
        self.trouble.is_some()
    }

    /// What holds the instance in FAULT, if anything does.
    pub fn trouble(&self) -> Option<Trouble> {
        self.trouble
    }

    /// `trouble` happened at `now`: FAULT until a retry lifts it, the next one a backoff away
    /// (each failure in a row doubles the wait, up to [`RETRY_MAX`]). Returns whether to say so:
    /// true when it is not what was said last.
    pub fn failed(&mut self, now: Instant, trouble: Trouble) -> bool {
        self.trouble = Some(trouble);
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
        self.reported.replace(trouble) != Some(trouble)
    }

    /// When [`HostFault::due`] next has work; `None` without trouble.
    pub fn next_retry(&self) -> Option<Instant> {
        self.trouble.and(self.retry_at)
    }

    /// At `now`: the retry to make, if one is due. A [`Retry::Claim`] sets the trouble aside
    /// at once (the instance may leave FAULT); a [`Retry::Probe`] keeps it until the outcome is
    /// reported.
    pub fn due(&mut self, now: Instant) -> Option<Retry> {
        let trouble = self.trouble?;
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        let retry = trouble.retry();
        self.retry_at = None;
        if retry == Retry::Claim {
            self.trouble = None;
        }
        Some(retry)
    }

    /// Makes the next retry due at `now`, whatever the backoff (the operator may have fixed the
    /// cause: a reload).
    pub fn retry_now(&mut self, now: Instant) {
        if self.trouble.is_some() {
            self.retry_at = Some(now);
        }
    }

    /// A probe passed: the trouble is over and the instance may leave FAULT. Returns the trouble
    /// it ends, to say so. The backoff is kept until a claim succeeds, so a host that passes the
    /// probe and still refuses the claim is not tried faster and faster.
    pub fn lifted(&mut self) -> Option<Trouble> {
        self.retry_at = None;
        self.reported = None;
        self.trouble.take()
    }

    /// The VIPs were added: whatever failed before is over. Returns the failure last said, if
    /// any, to say it is over.
    pub fn claimed(&mut self) -> Option<Trouble> {
        self.backoff = RETRY_FIRST;
        self.trouble = None;
        self.retry_at = None;
        self.reported.take()
    }
}

#[cfg(test)]
mod tests;
