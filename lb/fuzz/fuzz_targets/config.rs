//! Arbitrary bytes as a config file, through parsing and validation as `tandem check` and a
//! reload run them: nothing may panic, an error is located inside the file, and what passes
//! holds together (every service's pool exists).
#![no_main]

use libfuzzer_sys::fuzz_target;

use lb::config::{MAX_REPORTED, parse_bytes};

fuzz_target!(|data: &[u8]| {
    // Lines as an editor counts them: one more than the line breaks.
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    match parse_bytes(data, "fuzz.toml") {
        Ok(checked) => {
            let config = checked.config;
            assert!(!config.services.is_empty() || !config.vrrp.is_empty());
            for service in &config.services {
                assert!(config.pool(&service.pool).is_some(), "{service:?}");
            }
            for pool in &config.pools {
                assert!(!pool.backends.is_empty(), "{pool:?}");
            }
            for warning in &checked.warnings {
                assert!((1..=lines).contains(&warning.0.line), "{warning}");
            }
        }
        Err(errors) => {
            assert!(!errors.shown.is_empty());
            assert!(errors.shown.len() <= MAX_REPORTED);
            for error in &errors.shown {
                assert!((1..=lines).contains(&error.line), "{error}");
                assert!(error.column >= 1, "{error}");
                assert!(!error.message.contains('\n'), "{error}");
            }
        }
    }
});
