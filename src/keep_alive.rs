//! Keep-alive idle connections. hyper closes an HTTP/1.1 connection that waits longer than
//! `limits.header_read_timeout` for its next request, but reports it as the same error as a head
//! that stopped halfway (slowloris); and it has no idle limit for HTTP/2, where a client that
//! answers the sidecar's PINGs could hold a connection (and a `limits.max_connections` slot) for
//! ever without sending anything.
//!
//! Each request counts itself in when it arrives and out when its response body is done (or
//! dropped). For HTTP/2, [`idle`] resolves once no request has been in flight, and none has
//! started or ended, for the limit; the connection is then asked to close gracefully (GOAWAY: a
//! stream the client already started is still served). For HTTP/1.1, [`Watched`] notes whether
//! the client sent anything since the last response ended, so that hyper's timeout can be told
//! apart: [`Activity::at_rest`]. Per request: two atomic adds and a reference count; per read, a
//! plain store; per watched connection (HTTP/2, protocol-detected, and every connection of the
//! injection webhook), a timer that fires four times per limit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Added when a request starts: one more event (high 32 bits), one more in flight (low 32 bits).
const START: u64 = (1 << 32) + 1;
/// Added when a request ends: one more event, one fewer in flight (the borrow from the low half
/// is the carry into the high half, so the event count still rises by one).
const END: u64 = (1 << 32) - 1;

/// One connection's requests: how many are in flight, how many starts and ends there have been,
/// and (HTTP/1.1) how many reads brought bytes, in all and when the last response ended.
#[derive(Debug, Default)]
pub struct Activity {
    requests: AtomicU64,
    reads: AtomicU64,
    reads_at_last_end: AtomicU64,
}

impl Activity {
    /// Counts a request in; it is counted out when the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(START, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The number of requests in flight (for the tests; the code reads it with the event count).
    #[cfg(test)]
    fn in_flight(&self) -> u32 {
        in_flight(self.now())
    }

    /// True when a request has been served, none is in flight, and the client has sent nothing
    /// since the last one ended: the connection is an idle keep-alive one (reads are counted only
    /// on a [`Watched`] transport).
    pub fn at_rest(&self) -> bool {
        let now = self.now();
        now != 0
            && in_flight(now) == 0
            && self.reads.load(Ordering::Relaxed) == self.reads_at_last_end.load(Ordering::Relaxed)
    }

    /// The reads that brought bytes so far (counted on a [`Watched`] transport).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// The requests in flight in a reading of [`Activity`]'s counter (its low half).
fn in_flight(requests: u64) -> u32 {
    requests as u32
}

/// A request in flight on its connection, until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.reads_at_last_end
            .store(a.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        a.requests.fetch_add(END, Ordering::Relaxed);
    }
}

/// Resolves once `activity` showed nothing in flight and no change for `limit`: between `limit`
/// and `limit` + a quarter after the last request ended (or the connection started).
pub async fn idle(activity: &Activity, limit: Duration) {
    const QUARTERS: u32 = 4;
    let tick = (limit / QUARTERS).max(Duration::from_millis(1));
    let mut last = activity.now();
    let mut quiet = 0;
    loop {
        tokio::time::sleep(tick).await;
        let now = activity.now();
        if now != last || in_flight(now) != 0 {
            last = now;
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet == QUARTERS {
            return;
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection's transport that counts the reads that brought bytes into its [`Activity`].
    #[derive(Debug)]
    pub struct Watched<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
    }
}

impl<I> Watched<I> {
    /// Wraps `io`, counting into `activity`.
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            // Only this connection's task reads: a load and a store, no locked add.
            let reads = &this.activity.reads;
            reads.store(reads.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A request's handler: the request is counted in flight from its start, and the guard is
    /// handed to the response body ([`Tracked`]) when the handler answers. A struct rather than an
    /// `async` block, so the handler's future is polled where it was built instead of being
    /// moved into a larger one.
    #[derive(Debug)]
    pub struct Counted<F> {
        #[pin]
        handler: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Counted<F> {
    /// Counts a request in on `activity` and runs `handler` for it.
    pub fn new(activity: &Arc<Activity>, handler: F) -> Self {
        Counted {
            in_flight: Some(activity.begin()),
            handler,
        }
    }
}

impl<F, B, E> Future for Counted<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.handler.poll(cx))?;
        let in_flight = this
            .in_flight
            .take()
            .expect("Counted polled after it answered");
        Poll::Ready(Ok(response.map(|b| Tracked::new(b, in_flight))))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until it is done.
    #[derive(Debug)]
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> Tracked<B> {
    /// Wraps `inner`; the request stays in flight until it ends or is dropped.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Tracked {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            this.in_flight.take();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn counts_in_and_out() {
        let a = Arc::new(Activity::default());
        let one = a.begin();
        let two = a.begin();
        assert_eq!(a.in_flight(), 2);
        drop(one);
        assert_eq!(a.in_flight(), 1);
        let before = a.now();
        drop(two);
        assert_eq!(a.in_flight(), 0);
        assert_ne!(a.now(), before, "an end is an event");
        assert_eq!(a.now() >> 32, 4, "two starts and two ends");
    }

    #[tokio::test]
    async fn at_rest_only_after_a_request_and_with_nothing_read_since() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let a = Arc::new(Activity::default());
        let (client, server) = tokio::io::duplex(64);
        let mut client = client;
        let mut server = Watched::new(server, a.clone());
        assert!(!a.at_rest(), "no request yet");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).await.unwrap();
        assert!(n > 0);
        let request = a.begin();
        assert!(!a.at_rest(), "a request in flight");
        drop(request);
        assert!(a.at_rest(), "served, nothing sent since");
        client.write_all(b"GET").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        assert!(!a.at_rest(), "half a head has arrived");
        let request = a.begin();
        drop(request);
        assert!(a.at_rest(), "served again");
        server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(a.at_rest(), "writing is not the client sending");
        drop(client);
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        assert!(a.at_rest(), "an end of file brings no bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_after_the_limit_and_not_before() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_secs(8);
        let start = tokio::time::Instant::now();
        idle(&a, limit).await;
        let took = start.elapsed();
        assert!(took >= limit && took <= limit + limit / 4, "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_not_idle() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_secs(8);
        let held = a.begin();
        let watcher = tokio::time::timeout(limit * 3, idle(&a, limit));
        assert!(watcher.await.is_err(), "idle while a request was in flight");
        let ended = tokio::time::Instant::now();
        drop(held);
        idle(&a, limit).await;
        assert!(ended.elapsed() >= limit);
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_restarts_the_clock() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_secs(8);
        let watcher = idle(&a, limit);
        tokio::pin!(watcher);
        let start = tokio::time::Instant::now();
        // A short request every 5 s for 30 s: never 8 s without one.
        for _ in 0..6 {
            tokio::select! {
                _ = watcher.as_mut() => panic!("idle after {:?}", start.elapsed()),
                _ = tokio::time::sleep(Duration::from_secs(5)) => drop(a.begin()),
            }
        }
        let last = tokio::time::Instant::now();
        watcher.await;
        let quiet = last.elapsed();
        assert!(quiet >= limit && quiet <= limit + limit / 4, "{quiet:?}");
    }

    #[tokio::test]
    async fn a_request_counts_from_its_start_to_its_body_and_out_if_abandoned() {
        let a = Arc::new(Activity::default());
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let handler = async move {
            answered.await.unwrap();
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        };
        let counted = tokio::spawn(Counted::new(&a, handler));
        tokio::task::yield_now().await;
        assert_eq!(a.in_flight(), 1, "counted while the handler works");
        answer.send(()).unwrap();
        let response = counted.await.unwrap().unwrap();
        assert_eq!(a.in_flight(), 1, "still in flight while the body is unsent");
        drop(response);
        assert_eq!(a.in_flight(), 0);

        let abandoned = Counted::new(&a, std::future::pending::<Result<http::Response<()>, ()>>());
        assert_eq!(a.in_flight(), 1);
        drop(abandoned);
        assert_eq!(
            a.in_flight(),
            0,
            "a handler dropped unanswered (the stream reset)"
        );
    }

    #[tokio::test]
    async fn the_body_counts_out_when_it_ends_or_is_dropped() {
        let a = Arc::new(Activity::default());
        let mut body = Tracked::new(Full::new(bytes::Bytes::from_static(b"ok")), a.begin());
        assert_eq!(a.in_flight(), 1);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ok");
        assert_eq!(a.in_flight(), 1, "still sending");
        assert!(body.frame().await.is_none());
        assert_eq!(a.in_flight(), 0, "ended, while the body is still held");

        let unread = Tracked::new(Full::new(bytes::Bytes::from_static(b"ok")), a.begin());
        assert_eq!(a.in_flight(), 1);
        drop(unread);
        assert_eq!(a.in_flight(), 0);
    }
}
