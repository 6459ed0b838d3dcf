//! End-to-end tests of Tandem live in `tests/tests/`; this library is empty on purpose.
