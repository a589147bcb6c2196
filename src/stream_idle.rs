//! `limits.stream_idle_timeout`: a body that streams through the sidecar (the client's request
//! body to the backend, the backend's response body to the client) may go at most this long
//! without a frame. A stalled peer otherwise holds a connection on both sides for ever.
//!
//! The clock runs only while the sidecar waits on the body itself: a body that is not being polled
//! (the other side is slow to take what was sent) is not idle. The timer is made on the first wait,
//! so a body that is already there when it is read (most small ones) costs no timer at all.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Whose body went quiet: decides what is logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request body, on its way to the backend.
    Client,
    /// The backend's response body, on its way to the client.
    Backend,
}

/// The error a body ends with when it went quiet for longer than the limit.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {after:?} (limits.stream_idle_timeout)")]
pub struct BodyIdle {
    /// The limit that was exceeded.
    pub after: Duration,
}

/// How far a request body's upload has come, shared by the body and the proxy waiting for the
/// backend's answer: `limits.upstream_timeout` runs from the last byte the backend was handed, not
/// from the start of a long upload, and not while the sidecar itself waits for the client.
#[derive(Debug)]
pub struct Upload {
    start: Instant,
    /// Nanoseconds from `start` to the last frame, with [`WAITING`] set while the body waits on
    /// the client.
    state: AtomicU64,
}

const WAITING: u64 = 1 << 63;

impl Upload {
    fn new() -> Self {
        Upload {
            start: Instant::now(),
            state: AtomicU64::new(0),
        }
    }

    fn frame(&self) {
        let nanos = self.start.elapsed().as_nanos().min(u128::from(WAITING - 1)) as u64;
        self.state.store(nanos, Ordering::Relaxed);
    }

    fn waiting(&self) {
        self.state.fetch_or(WAITING, Ordering::Relaxed);
    }

    /// When the backend's answer is due, `timeout` being `limits.upstream_timeout`: that long
    /// after the last frame it was handed, or after `now` while the client is the one awaited.
    pub fn deadline(&self, timeout: Duration, now: Instant) -> Instant {
        let s = self.state.load(Ordering::Relaxed);
        if s & WAITING != 0 {
            now + timeout
        } else {
            self.start + Duration::from_nanos(s) + timeout
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that fails with [`BodyIdle`] when no frame arrives for `limit` while it is polled.
    pub struct IdleBody<B> {
        #[pin]
        inner: B,
        limit: Duration,
        side: Side,
        // Made on the first wait; re-armed on the first wait after a frame.
        timer: Option<Pin<Box<Sleep>>>,
        progressed: bool,
        // Only for a request body that has something to send.
        upload: Option<Arc<Upload>>,
    }
}

impl<B: Body> IdleBody<B> {
    /// The client's request body, on its way to the backend.
    pub fn request(inner: B, limit: Duration) -> Self {
        let upload = (!inner.is_end_stream()).then(|| Arc::new(Upload::new()));
        IdleBody::new(inner, limit, Side::Client, upload)
    }

    /// The backend's response body, on its way to the client.
    pub fn response(inner: B, limit: Duration) -> Self {
        IdleBody::new(inner, limit, Side::Backend, None)
    }

    fn new(inner: B, limit: Duration, side: Side, upload: Option<Arc<Upload>>) -> Self {
        IdleBody {
            inner,
            limit,
            side,
            timer: None,
            progressed: false,
            upload,
        }
    }

    /// For a request body with something to send: how far its upload has come.
    pub fn upload(&self) -> Option<&Arc<Upload>> {
        self.upload.as_ref()
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(r) = this.inner.poll_frame(cx) {
            *this.progressed = true;
            if let Some(u) = this.upload {
                u.frame();
            }
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        let timer = match this.timer {
            Some(t) if *this.progressed => {
                t.as_mut().reset(Instant::now() + *this.limit);
                t
            }
            Some(t) => t,
            None => this.timer.insert(Box::pin(tokio::time::sleep(*this.limit))),
        };
        *this.progressed = false;
        if let Some(u) = this.upload {
            u.waiting();
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        went_quiet(*this.side, *this.limit);
        Poll::Ready(Some(Err(Box::new(BodyIdle { after: *this.limit }))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn went_quiet(side: Side, limit: Duration) {
    let after_ms = limit.as_millis() as u64;
    match side {
        Side::Backend => {
            crate::metrics::upstream_error("timeout");
            tracing::warn!(target: "countersign::upstream", kind = "timeout", after_ms, "the backend's response body stalled; the response is cut off");
        }
        Side::Client => {
            tracing::info!(target: "countersign::upstream", after_ms, "the client's request body stalled; the request is cut off");
        }
    }
}

/// True when `e`, or an error it was caused by, is a [`BodyIdle`].
pub fn is_idle(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<BodyIdle>() {
            return true;
        }
        cur = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body the test feeds: each message a frame, the channel's close the body's end.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_body_already_there_makes_no_timer() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        drop(tx);
        let mut b = IdleBody::response(Fed(rx), Duration::from_millis(50));
        assert!(b.frame().await.unwrap().is_ok());
        assert!(b.frame().await.is_none());
        assert!(b.timer.is_none());
    }

    #[tokio::test]
    async fn gaps_under_the_limit_pass_and_a_longer_one_ends_the_body() {
        let limit = Duration::from_millis(150);
        let (tx, rx) = mpsc::channel(4);
        let mut b = IdleBody::request(Fed(rx), limit);
        let upload = b.upload().unwrap().clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                let _ = tx.send(Bytes::from_static(b"u")).await;
            }
            // Then quiet for longer than the limit, still open.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let start = Instant::now();
        for _ in 0..4 {
            assert!(b.frame().await.unwrap().is_ok());
        }
        // Four gaps of 60ms: 240ms in all, more than the limit, yet each under it.
        assert!(start.elapsed() >= Duration::from_millis(240));
        let quiet = Instant::now();
        let e = b.frame().await.unwrap().unwrap_err();
        assert!(is_idle(&*e), "{e}");
        let waited = quiet.elapsed();
        assert!(
            waited >= limit && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        // While the body waited on the client, the backend's answer was not due.
        let now = Instant::now();
        assert_eq!(upload.deadline(limit, now), now + limit);
    }

    #[tokio::test]
    async fn the_backends_answer_is_due_from_the_last_frame_it_was_handed() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"u")).await.unwrap();
        let mut b = IdleBody::request(Fed(rx), Duration::from_secs(60));
        let upload = b.upload().unwrap().clone();
        assert!(b.frame().await.unwrap().is_ok());
        let handed = Instant::now();
        // Not polled again (the backend is not taking more): the clock runs from that frame.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let timeout = Duration::from_millis(500);
        let due = upload.deadline(timeout, Instant::now());
        // Not from now (50ms later), and not from before the frame.
        assert!(due <= handed + timeout, "{:?}", due - handed);
        assert!(due + Duration::from_millis(40) >= handed + timeout);
        drop(tx);
    }

    #[test]
    fn a_body_with_nothing_to_send_tracks_no_upload() {
        let empty = http_body_util::Empty::<Bytes>::new();
        assert!(
            IdleBody::request(empty, Duration::from_secs(1))
                .upload()
                .is_none()
        );
    }
}
