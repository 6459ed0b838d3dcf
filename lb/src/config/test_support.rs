//! Helpers shared by the config tests: a minimal valid file, variants of it with one section
//! changed, and assertions on the errors a source produces.

use std::net::SocketAddr;

use super::{ConfigError, parse};

/// The smallest valid config; the service is on lines 1-4, the pool on 5-7.
pub(super) const MINIMAL: &str = r#"[[service]]
name = "web"
listen = "127.0.0.1:80"
pool = "web"
[[pool]]
name = "web"
backends = [{ addr = "10.0.0.1:80" }]
"#;

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn errors(source: &str) -> Vec<ConfigError> {
    match parse(source, "tandem.toml") {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors.shown,
    }
}

/// Asserts exactly one error and returns it.
pub(super) fn single_error(source: &str) -> ConfigError {
    let mut all = errors(source);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

pub(super) fn assert_error(source: &str, line: usize, column: usize, fragment: &str) {
    let error = single_error(source);
    assert_eq!(
        (error.line, error.column),
        (line, column),
        "wrong position for {error}"
    );
    assert!(
        error.message.contains(fragment),
        "{:?} does not mention {fragment:?}",
        error.message
    );
    assert_eq!(error.file, "tandem.toml");
}

/// MINIMAL with `extra` appended to the service table (after line 4).
pub(super) fn service_with(extra: &str) -> String {
    format!(
        "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n{extra}\n\
         [[pool]]\nname = \"web\"\nbackends = [{{ addr = \"10.0.0.1:80\" }}]\n"
    )
}

/// MINIMAL with the backends list replaced; the list is on line 7.
pub(super) fn backends(list: &str) -> String {
    format!(
        "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:80\"\npool = \"web\"\n\
         [[pool]]\nname = \"web\"\nbackends = {list}\n"
    )
}

/// MINIMAL with `extra` in a `[node]` table on lines 1-2.
pub(super) fn node_with(extra: &str) -> String {
    format!("[node]\n{extra}\n{MINIMAL}")
}
