//! Shared by the end-to-end tests and the webhook tests: an HTTP/2 connection closed for being
//! idle.

use std::time::{Duration, Instant};

/// Waits (up to 5 s) for the client task of an HTTP/2 connection to end after its last request,
/// and checks that it ended without an error (a GOAWAY, not a reset) and no sooner than `idle`.
pub async fn ends_gracefully_after(
    conn: &mut tokio::task::JoinHandle<Result<(), h2::Error>>,
    idle: Duration,
) {
    let quiet = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("an idle HTTP/2 connection was not closed");
    let after = quiet.elapsed();
    ended.unwrap().expect("closed gracefully");
    assert!(after >= idle, "closed {after:?} after the last request");
}
