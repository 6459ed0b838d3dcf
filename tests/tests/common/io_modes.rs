//! The ways a node moves bytes (`[node] io`), and running one test body on each of them.

use std::thread;

/// Every `[node] io` a test may run on.
pub const IO_MODES: [&str; 5] = [
    "epoll",
    "io_uring",
    "io_uring_deferring",
    "io_uring_plain",
    "auto",
];

/// One `#[test]` per I/O mode, each running the same body on the mode its name ends with:
///
/// ```text
/// on_each_io! {
///     half_close(io) =>
///         half_close_io_uring,
///         half_close_epoll,
/// }
/// ```
///
/// makes the tests `half_close_io_uring`, calling `half_close("io_uring")`, and
/// `half_close_epoll`, calling `half_close("epoll")`. More arguments follow the mode: with
/// `body(io, 2)`, the `_epoll` test calls `body("epoll", 2)`. Whatever a body skips (a ring
/// this kernel forbids) it skips itself.
///
/// The names are written out, so that a search for a test's name finds it here; the mode is
/// read from the name (at compile time: see [`io_mode_of`]), so a test's name and the mode it
/// runs on cannot disagree.
#[allow(unused_macros)] // in the test files that run on each mode only
macro_rules! on_each_io {
    ($body:ident $args:tt => $($test:ident),+ $(,)?) => {
        $($crate::common::on_each_io!(@one $test: $body $args);)+
    };
    (@one $test:ident: $body:ident(io $(, $arg:expr)* $(,)?)) => {
        #[test]
        fn $test() {
            const IO: &str = $crate::common::io_mode_of(stringify!($test));
            $body(IO $(, $arg)*);
        }
    };
}
#[allow(unused_imports)] // as above
pub(crate) use on_each_io;

/// The I/O mode (one of [`IO_MODES`]) that a test named `<what>_<mode>` runs on. Evaluated in
/// a constant, a name ending in no mode fails the build.
pub const fn io_mode_of(test: &str) -> &'static str {
    let name = test.as_bytes();
    let mut m = 0;
    while m < IO_MODES.len() {
        let mode = IO_MODES[m].as_bytes();
        if name.len() > mode.len() {
            // `_<mode>` at the end of the name.
            let start = name.len() - mode.len();
            let mut same = name[start - 1] == b'_';
            let mut i = 0;
            while same && i < mode.len() {
                same = name[start + i] == mode[i];
                i += 1;
            }
            if same {
                return IO_MODES[m];
            }
        }
        m += 1;
    }
    panic!("a test run on each I/O mode is named `<what>_<mode>`, the mode one of IO_MODES")
}

/// `config` (as `simple_config` writes it) with `[node] io = "{io}"`.
pub fn with_io(config: &str, io: &str) -> String {
    assert!(config.contains("[node]\n"), "a config with a [node] table");
    config.replacen("[node]\n", &format!("[node]\nio = \"{io}\"\n"), 1)
}

/// Whether a node can run on `io` here: the io_uring modes need a ring this kernel allows (see
/// [`io_uring_usable`], which says why not, or fails under CI).
pub fn io_usable(io: &str) -> bool {
    !io.starts_with("io_uring") || io_uring_usable()
}

/// Whether this kernel lets the tests' process set up an io_uring. When it does not, says why
/// and returns false, or fails under TANDEM_REQUIRE_PRIVILEGED=1 (CI, where it must).
///
/// The probe ring is made and dropped on a thread of its own that then ends. Dropped on the
/// test's thread, the ring's teardown would later post that thread a signal-like task-work
/// notice, and a blocking socket read with a timeout (as `Client` sets) then fails with EINTR
/// instead of being restarted: a test failing for the probe's sake, not the proxy's.
pub fn io_uring_usable() -> bool {
    let probe = thread::spawn(|| io_uring::IoUring::new(8).map(drop))
        .join()
        .expect("the io_uring probe thread");
    match probe {
        Ok(()) => true,
        Err(e) => super::skipped(&format!("io_uring is not usable here ({e})")),
    }
}
