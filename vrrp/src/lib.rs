//! `vrrp` owns one question: which node holds a virtual IP.
//!
//! It will hold a pure core (`packet`: the VRRPv2/v3 codec, `machine`: the RFC 5798 state
//! machine, with time always passed in) and a thin I/O shell (raw sockets, rtnetlink, ARP).
//! It knows nothing of `lb` or `healthcheck`; the daemon in `lb` composes them.
//!
//! Nothing is implemented yet: the election arrives with the VRRP issue. The crate exists now so
//! the workspace has its final shape and dependency direction from the first commit.
#![forbid(unsafe_code)]
