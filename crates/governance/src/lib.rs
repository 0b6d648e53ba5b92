//! The NEP rules: a pure, deterministic state machine with no I/O.
