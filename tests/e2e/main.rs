//! End-to-end tests, one module per capability.

mod jwt;
