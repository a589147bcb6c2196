//! Step 5: the access policy: who the client is (IP), which route applies, and what it requires.

pub mod client_ip;
pub mod ipset;
pub mod path;
pub mod routes;
