//! Step 4: one request, top to bottom: snapshot, request id, client IP, route, the route's
//! requirements in order, the verdict (enforced or reported), then the forward (`proxy.rs`) and the
//! access line. Previous step: `serve.rs`; next: `policy`, the verifiers, `proxy.rs`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio_util::sync::CancellationToken;

use crate::config::{AccessLog, ClientIpFrom, Mode, Requirement};
use crate::headers;
use crate::metrics;
use crate::policy::client_ip;
use crate::policy::ipset::canonical;
use crate::policy::path;
use crate::policy::routes::Route;
use crate::proxy::{self, Proxy, ReqBody};
use crate::reject::{Denial, Reject};
use crate::request_id;
use crate::signature::SignedRequest;
use crate::state::{Shared, Snapshot};
use crate::stream_idle::IdleBody;
use crate::tls::{self, PeerIdentity};
use crate::tunnel::Tunnel;

/// What the connection tells every request on it.
#[derive(Debug)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The source address: the PROXY header's, or the peer's (IPv4-mapped turned to IPv4).
    pub source: IpAddr,
    /// `source` as a header value.
    pub source_header: HeaderValue,
    /// The verified client certificate, when the handshake had one.
    pub identity: Option<Arc<PeerIdentity>>,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// The snapshot generation the identity was last verified against.
    pub verified_generation: AtomicU64,
    /// Cancel to close the connection once in-flight requests are done.
    pub close: CancellationToken,
    /// A tunnel a request agreed with the backend, run once hyper hands the connection over.
    tunnel: Mutex<Option<Tunnel>>,
}

impl ConnInfo {
    /// Connection facts for a peer, its PROXY source if any, and its TLS identity.
    pub fn new(
        peer: SocketAddr,
        proxied: Option<SocketAddr>,
        tls: bool,
        identity: Option<Arc<PeerIdentity>>,
        generation: u64,
        close: CancellationToken,
    ) -> Self {
        let source = canonical(proxied.unwrap_or(peer).ip());
        ConnInfo {
            peer,
            source,
            source_header: ip_header(source),
            identity,
            scheme: if tls { "https" } else { "http" },
            verified_generation: AtomicU64::new(generation),
            close,
            tunnel: Mutex::new(None),
        }
    }

    /// The tunnel a request on this connection agreed with the backend, if any (taken once).
    pub fn take_tunnel(&self) -> Option<Tunnel> {
        self.tunnel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn set_tunnel(&self, t: Tunnel) {
        *self
            .tunnel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(t);
    }
}

fn ip_header(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid header value")
}

/// The response body: a refusal, or the backend's streamed body, with the access line attached.
pub type ResBody = Logged<Either<Full<Bytes>, IdleBody<crate::upstream::PooledBody>>>;

/// The request handler shared by every connection.
pub struct App {
    /// The current snapshot.
    pub state: Shared,
    /// The backend client.
    pub proxy: Proxy,
}

/// What the requirements established about the caller, for the backend's headers and the log.
#[derive(Default)]
struct Established {
    identity: Option<Arc<PeerIdentity>>,
    key_id: Option<HeaderValue>,
    jwt_sub: Option<HeaderValue>,
    jwt_forward: Vec<(http::HeaderName, HeaderValue)>,
}

impl App {
    /// Handles one request; never fails (refusals are responses).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Result<Response<ResBody>, Infallible> {
        let start = Instant::now();
        let snap = self.state.load_full();
        let (mut parts, body) = req.into_parts();
        let request_id = request_id::get_or_make(&parts.headers);

        // The verdict: Ok with what was established, or the refusal.
        let mut est = Established::default();
        let client_ip = match resolve_client_ip(&snap, &conn, &parts.headers) {
            Ok(ip) => ip,
            Err(d) => {
                return Ok(self.refuse(
                    &snap,
                    None,
                    d,
                    &parts,
                    conn.source,
                    &est,
                    &request_id,
                    start,
                ));
            }
        };
        if head_size(&parts) > snap.config.limits.max_header_bytes {
            let d = Denial::new(
                Reject::HeadersTooLarge,
                "request head larger than limits.max_header_bytes",
            );
            return Ok(self.refuse(&snap, None, d, &parts, client_ip, &est, &request_id, start));
        }
        let match_path = path::for_matching(parts.uri.path());
        let Some(route) = snap.routes.find(&parts.method, &match_path) else {
            let d = Denial::new(
                Reject::NoRoute,
                format!("no route for {} {}", parts.method, match_path),
            );
            return Ok(self.refuse(&snap, None, d, &parts, client_ip, &est, &request_id, start));
        };
        if matches!(match_path, Cow::Owned(_))
            && let Some((reading, other)) = path::disagreeing(parts.uri.path(), route, |p| {
                snap.routes.find(&parts.method, p)
            })
        {
            let d = Denial::new(
                Reject::MalformedRequest,
                format!(
                    "ambiguous path: route {} as decoded, but {} read as {}",
                    route.name,
                    other.map_or("no route", |r| r.name.as_str()),
                    crate::signature::shown(&reading)
                ),
            );
            return Ok(self.refuse(&snap, None, d, &parts, client_ip, &est, &request_id, start));
        }
        drop(match_path);

        let mut body = BodyState::Streaming(body);
        let verdict =
            check_route(route, &snap, &parts, &conn, client_ip, &mut body, &mut est).await;
        let reported = match (verdict, route.mode) {
            (Ok(()), _) => None,
            (Err(d), Mode::Enforce) => {
                return Ok(self.refuse(
                    &snap,
                    Some(route),
                    d,
                    &parts,
                    client_ip,
                    &est,
                    &request_id,
                    start,
                ));
            }
            (Err(d), Mode::Report) => Some(d),
        };

        // Forward.
        let limits = &snap.config.limits;
        // The client's upgrade handle, for a WebSocket upgrade. hyper puts one on a request only
        // when it carries `Upgrade` (HTTP/1.1) or is a CONNECT, so the usual request is told apart
        // without a header lookup; taken from the parts (`hyper::upgrade::on` needs a `Request`,
        // and building one moves the request twice).
        let client_upgrade = (parts.extensions.get::<OnUpgrade>().is_some()
            && proxy::is_upgrade(parts.version, &parts.headers))
        .then(|| parts.extensions.remove::<OnUpgrade>())
        .flatten();
        let upgrade = client_upgrade.is_some();
        let body = body.into_req_body(limits.stream_idle_timeout);
        let new_record = |method: &http::Method, path: &str| {
            AccessRecord::new(
                &route.name,
                method,
                path,
                client_ip,
                &est,
                &request_id,
                start,
                route.mode,
            )
        };
        let record = wants_log(&snap, reported.is_some()).then(|| {
            let mut r = new_record(&parts.method, parts.uri.path());
            if let Some(d) = &reported {
                r.deny(d, "report_denied");
            }
            r
        });
        prepare_upstream_headers(
            &mut parts.headers,
            &snap,
            &conn,
            client_ip,
            &est,
            &request_id,
            upgrade,
        );
        let uri = self.proxy.retarget(&mut parts);
        // With `log.access: denied` a request that passed has no line, unless countersign ends up
        // answering it itself (the backend failed or did not answer, the upload stalled): what
        // that line needs is kept until the backend's answer is known.
        let unlogged = if record.is_none() && snap.config.log.access == AccessLog::Denied {
            Some((parts.method.clone(), uri))
        } else {
            drop(uri);
            None
        };
        route
            .metrics
            .count(reported.as_ref().map(|d| d.reject), route.mode);

        let mut resp = match self
            .proxy
            .send(Request::from_parts(parts, body), limits)
            .await
        {
            Ok(r) => r,
            Err(d) => {
                route.metrics.observe(start.elapsed());
                let mut record = record
                    .or_else(|| unlogged.map(|(method, uri)| new_record(&method, uri.path())));
                if let Some(r) = &mut record {
                    r.deny(&d, "upstream_failed");
                }
                let resp: Response<Full<Bytes>> = d.reject.response(Some(&request_id));
                return Ok(resp.map(|b| Logged::new(Either::Left(b), record)));
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            let mtls_required = route.require.iter().any(|r| matches!(r, Requirement::Mtls));
            conn.set_tunnel(Tunnel::new(
                client_upgrade,
                backend_upgrade,
                limits.tunnel_idle_timeout,
                mtls_required,
            ));
        } else {
            proxy::strip_hop_by_hop(resp.headers_mut(), false);
        }
        route.metrics.observe(start.elapsed());
        let record = record.map(|mut r| {
            r.status = resp.status().as_u16();
            r
        });
        let idle = limits.stream_idle_timeout;
        Ok(resp.map(|b| Logged::new(Either::Right(IdleBody::response(b, idle)), record)))
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        snap: &Snapshot,
        route: Option<&Route>,
        d: Denial,
        parts: &http::request::Parts,
        client_ip: IpAddr,
        est: &Established,
        request_id: &HeaderValue,
        start: Instant,
    ) -> Response<ResBody> {
        let rm = route.map_or(&snap.no_route, |r| &r.metrics);
        rm.count(Some(d.reject), Mode::Enforce);
        rm.observe(start.elapsed());
        let record = (snap.config.log.access != AccessLog::Off).then(|| {
            let name = route.map_or("-", |r| r.name.as_str());
            let mut r = AccessRecord::new(
                name,
                &parts.method,
                parts.uri.path(),
                client_ip,
                est,
                request_id,
                start,
                Mode::Enforce,
            );
            r.deny(&d, "denied");
            r
        });
        let resp: Response<Full<Bytes>> = d.reject.response(Some(request_id));
        resp.map(|b| Logged::new(Either::Left(b), record))
    }
}

fn wants_log(snap: &Snapshot, would_deny: bool) -> bool {
    match snap.config.log.access {
        AccessLog::All => true,
        AccessLog::Denied => would_deny,
        AccessLog::Off => false,
    }
}

/// The request line and header bytes, roughly as on the wire.
fn head_size(parts: &http::request::Parts) -> usize {
    let line = parts.method.as_str().len()
        + parts.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    parts
        .headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

fn resolve_client_ip(snap: &Snapshot, conn: &ConnInfo, h: &HeaderMap) -> Result<IpAddr, Denial> {
    match snap.config.client_ip.from {
        ClientIpFrom::Peer | ClientIpFrom::ProxyProtocol => Ok(conn.source),
        ClientIpFrom::XForwardedFor => client_ip::from_xff(conn.source, h, &snap.trusted_proxies)
            .map_err(|e| Denial::new(Reject::MalformedRequest, e.to_string())),
    }
}

/// The request body: still streaming, or buffered because a digest had to be checked.
enum BodyState {
    Streaming(Incoming),
    Buffered(Bytes),
    /// Only while buffering.
    Taken,
}

impl BodyState {
    fn into_req_body(self, idle: std::time::Duration) -> ReqBody {
        match self {
            BodyState::Streaming(b) => Either::Left(IdleBody::request(b, idle)),
            BodyState::Buffered(b) => Either::Right(Full::new(b)),
            BodyState::Taken => Either::Right(Full::new(Bytes::new())),
        }
    }

    fn buffered(&self) -> Option<&[u8]> {
        match self {
            BodyState::Buffered(b) => Some(b),
            _ => None,
        }
    }

    /// Reads the whole body (up to `max` bytes, within `timeout`) so it can be checked and then sent.
    async fn buffer(&mut self, max: usize, timeout: std::time::Duration) -> Result<(), Denial> {
        let BodyState::Streaming(body) = std::mem::replace(self, BodyState::Taken) else {
            return Ok(());
        };
        let too_large = || {
            Denial::new(
                Reject::BodyTooLarge,
                "body larger than limits.max_digest_body",
            )
        };
        if body.size_hint().lower() > max as u64 {
            return Err(too_large());
        }
        let collected =
            match tokio::time::timeout(timeout, http_body_util::Limited::new(body, max).collect())
                .await
            {
                Err(_) => {
                    return Err(Denial::new(
                        Reject::RequestTimeout,
                        "body not received within limits.body_timeout",
                    ));
                }
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
                Ok(Err(e)) => {
                    return Err(Denial::new(
                        Reject::MalformedRequest,
                        format!("reading the body: {e}"),
                    ));
                }
                Ok(Ok(c)) => c.to_bytes(),
            };
        *self = BodyState::Buffered(collected);
        Ok(())
    }
}

/// Checks the route's requirements in order; the first failure is the verdict. A signature is
/// recorded against replay only once every requirement passed, so a tampered copy of an accepted
/// request is refused for what is wrong with it, and a refused request burns nothing.
async fn check_route(
    route: &Route,
    snap: &Snapshot,
    parts: &http::request::Parts,
    conn: &ConnInfo,
    client_ip: IpAddr,
    body: &mut BodyState,
    est: &mut Established,
) -> Result<(), Denial> {
    // Identity is established whenever a certificate is known, so the backend hears of it even on
    // routes that do not require mtls.
    est.identity = client_identity(snap, conn, &parts.headers)?;
    let mut replay = None;
    for req in &route.require {
        let t = Instant::now();
        let r = match req {
            Requirement::Mtls => check_mtls(snap, conn, est.identity.as_deref()),
            Requirement::Ip => {
                if snap.ip_allow.contains(client_ip) {
                    Ok(())
                } else {
                    Err(Denial::new(
                        Reject::IpDenied,
                        format!("{client_ip} is not in ip_allow"),
                    ))
                }
            }
            Requirement::Signature => check_signature(snap, parts, conn, client_ip, body, est)
                .await
                .map(|v| {
                    replay = Some(v);
                }),
            Requirement::Jwt => check_jwt(route, snap, &parts.headers, est).await,
            Requirement::ApiKey => check_api_key(snap, &parts.headers, client_ip, est),
        };
        metrics::VERIFY.observe(*req, t.elapsed());
        r?;
    }
    if let (Some((token, until)), Some(store)) = (replay, &snap.replay) {
        store
            .check_and_record(token, until, SystemTime::now())
            .await?;
    }
    Ok(())
}

/// Verifies the request signature; returns what the replay check needs.
async fn check_signature(
    snap: &Snapshot,
    parts: &http::request::Parts,
    conn: &ConnInfo,
    client_ip: IpAddr,
    body: &mut BodyState,
    est: &mut Established,
) -> Result<([u8; 32], SystemTime), Denial> {
    let Some(verifier) = &snap.verifier else {
        return Err(Denial::new(
            Reject::SignatureMissing,
            "the route requires signature but no key registry is loaded",
        ));
    };
    if verifier.needs_body(&parts.headers) {
        let l = &snap.config.limits;
        body.buffer(l.max_digest_body, l.body_timeout).await?;
    }
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let req = SignedRequest {
        method: &parts.method,
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        scheme: conn.scheme,
        authority,
        headers: &parts.headers,
        body: body.buffered(),
        client_ip,
    };
    let v = verifier.verify(&req, SystemTime::now())?;
    est.key_id = Some(v.key.id_header.clone());
    Ok((v.replay_token, v.fresh_until))
}

/// Looks the presented API key up by its SHA-256 in the registry.
fn check_api_key(
    snap: &Snapshot,
    h: &HeaderMap,
    client_ip: IpAddr,
    est: &mut Established,
) -> Result<(), Denial> {
    let name = &snap.config.api_key_header;
    let Some(presented) = h.get(name) else {
        return Err(Denial::new(
            Reject::ApiKeyMissing,
            format!("no {name} header"),
        ));
    };
    let key = snap
        .registry
        .as_ref()
        .and_then(|r| r.find_api_key(presented.as_bytes()))
        .ok_or_else(|| {
            Denial::new(
                Reject::ApiKeyInvalid,
                format!("the {name} value matches no api_key_sha256 in the registry"),
            )
        })?;
    key.check_validity(SystemTime::now())
        .map_err(|why| Denial::new(Reject::ApiKeyInvalid, format!("API key {}: {why}", key.id)))?;
    if let Some(allow) = &key.ip_allow
        && !allow.contains(client_ip)
    {
        return Err(Denial::new(
            Reject::KeyNotAllowedFromIp,
            format!(
                "API key {} may not be used from {client_ip} (its ip_allow)",
                key.id
            ),
        ));
    }
    est.key_id = Some(key.id_header.clone());
    Ok(())
}

async fn check_jwt(
    route: &Route,
    snap: &Snapshot,
    h: &HeaderMap,
    est: &mut Established,
) -> Result<(), Denial> {
    let Some(jwt) = &snap.jwt else {
        return Err(Denial::new(
            Reject::TokenMissing,
            "the route requires jwt but no jwt: section is loaded",
        ));
    };
    let claims = jwt.verify(h, SystemTime::now()).await?;
    if !claims.has_scopes(&route.scopes) {
        let missing: Vec<&str> = route
            .scopes
            .iter()
            .filter(|s| !claims.scopes.contains(s))
            .map(String::as_str)
            .collect();
        return Err(Denial::new(
            Reject::InsufficientScope,
            format!(
                "token (sub {:?}) lacks scopes {}",
                claims.sub.as_deref().unwrap_or("-"),
                missing.join(" ")
            ),
        ));
    }
    // A `sub` with characters a header cannot carry is not forwarded rather than mangled.
    est.jwt_sub = claims
        .sub
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok());
    est.jwt_forward = claims.forward;
    Ok(())
}

/// The `mtls` requirement: a client certificate that `tls.allow_clients` admits. A connection's
/// own certificate that it no longer admits (after a reload) is not served again: the connection
/// is told to close, for a request and for an open tunnel alike.
fn check_mtls(
    snap: &Snapshot,
    conn: &ConnInfo,
    identity: Option<&PeerIdentity>,
) -> Result<(), Denial> {
    let Some(id) = identity else {
        return Err(Denial::new(
            Reject::ClientCertDenied,
            "no client certificate",
        ));
    };
    let allow = snap
        .config
        .tls
        .as_ref()
        .map_or(&[][..], |t| &t.allow_clients[..]);
    if id.allowed_by(allow) {
        Ok(())
    } else {
        if conn.identity.is_some() {
            conn.close.cancel();
        }
        Err(Denial::new(
            Reject::ClientCertDenied,
            format!(
                "certificate subject \"{}\" (sha256 {}) matches no tls.allow_clients entry",
                id.subject,
                id.sha256_hex()
            ),
        ))
    }
}

/// The client certificate: from the handshake, or from `client_ip.client_cert_header` when the
/// TCP peer is a trusted proxy (verified against `tls.client_ca` when one is set).
fn client_identity(
    snap: &Snapshot,
    conn: &ConnInfo,
    h: &HeaderMap,
) -> Result<Option<Arc<PeerIdentity>>, Denial> {
    if let Some(id) = &conn.identity {
        return reverify(snap, conn, id).map(|()| Some(id.clone()));
    }
    let Some(name) = &snap.config.client_ip.client_cert_header else {
        return Ok(None);
    };
    let Some(value) = h.get(name) else {
        return Ok(None);
    };
    if !snap.trusted_proxies.contains(conn.peer.ip()) {
        tracing::debug!(peer = %conn.peer, "ignoring {name} from a peer outside client_ip.trusted_proxies");
        return Ok(None);
    }
    let chain_value = h.get(headers::SPOOFABLE[2].clone());
    let chain = tls::certs_from_headers(value.as_bytes(), chain_value.map(HeaderValue::as_bytes))
        .map_err(|m| Denial::new(Reject::ClientCertDenied, m))?;
    if let Some(v) = snap.tls.as_ref().and_then(|t| t.client_verifier.as_ref()) {
        tls::verify_chain(v.as_ref(), &chain).map_err(|e| {
            Denial::new(
                Reject::ClientCertDenied,
                format!("{name}: certificate refused: {e}"),
            )
        })?;
    }
    let id = PeerIdentity::from_chain(&chain)
        .map_err(|e| Denial::new(Reject::ClientCertDenied, format!("{name}: {e}")))?;
    Ok(Some(Arc::new(id)))
}

impl App {
    /// For an open tunnel, which has no next request: after a reload, the checks of the
    /// connection's TLS certificate that close a connection when a request makes them (its CA
    /// bundle and CRLs; `allow_clients` when the tunnel's route requires `mtls`). Err (and the
    /// connection told to close) when the certificate no longer admits it.
    pub fn recheck_tunnel(&self, conn: &ConnInfo, mtls_required: bool) -> Result<(), Denial> {
        let Some(id) = &conn.identity else {
            return Ok(());
        };
        let snap = self.state.load();
        if conn.verified_generation.load(Ordering::Acquire) == snap.generation {
            return Ok(());
        }
        reverify(&snap, conn, id)?;
        if mtls_required {
            check_mtls(&snap, conn, Some(id))?;
        }
        Ok(())
    }
}

/// After a reload, checks a kept-alive connection's certificate against the new CA bundle and
/// CRLs once; a certificate revoked since the handshake closes the connection.
fn reverify(snap: &Snapshot, conn: &ConnInfo, id: &PeerIdentity) -> Result<(), Denial> {
    if conn.verified_generation.load(Ordering::Acquire) == snap.generation {
        return Ok(());
    }
    let verifier = snap.tls.as_ref().and_then(|t| t.client_verifier.as_ref());
    let verdict = match verifier {
        Some(v) => {
            let mut chain = Vec::with_capacity(1 + id.intermediates.len());
            chain.push(id.cert.clone());
            chain.extend(id.intermediates.iter().cloned());
            tls::verify_chain(v.as_ref(), &chain).map_err(|e| e.to_string())
        }
        None => {
            Err("client certificates are no longer verified (tls.client_ca removed)".to_string())
        }
    };
    match verdict {
        Ok(()) => {
            conn.verified_generation
                .store(snap.generation, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            conn.close.cancel();
            Err(Denial::new(
                Reject::ClientCertDenied,
                format!(
                    "certificate \"{}\" no longer verifies after a reload ({e}); connection closed",
                    id.subject
                ),
            ))
        }
    }
}

/// Strips what the backend must not trust and adds what countersign established.
fn prepare_upstream_headers(
    h: &mut HeaderMap,
    snap: &Snapshot,
    conn: &ConnInfo,
    client_ip: IpAddr,
    est: &Established,
    request_id: &HeaderValue,
    upgrade: bool,
) {
    // Hop-by-hop first, so a `Connection` header can never remove what is added below.
    proxy::strip_hop_by_hop(h, upgrade);
    proxy::strip_spoofable(h);
    if let Some(name) = &snap.config.client_ip.client_cert_header {
        h.remove(name);
    }
    if let Some(j) = &snap.config.jwt {
        // Headers carrying forwarded claims are countersign's to set, whether or not this token
        // has the claim.
        for (_, name) in &j.forward_claims {
            h.remove(name);
        }
        if !j.forward_token {
            crate::token::strip_bearer(h);
        }
    }
    if !snap.config.api_key_forward {
        h.remove(&snap.config.api_key_header);
    }
    // Room for what is added below, made once: hyper sizes the map for the headers it parsed,
    // so inserting one by one would grow it (and move every entry) once or twice per request.
    let identity = est
        .identity
        .as_ref()
        .map_or(0, |id| 2 + usize::from(id.uri_header.is_some()));
    h.reserve(
        2 + identity
            + usize::from(est.key_id.is_some())
            + usize::from(est.jwt_sub.is_some())
            + est.jwt_forward.len(),
    );
    let ip = if client_ip == conn.source {
        conn.source_header.clone()
    } else {
        ip_header(client_ip)
    };
    h.insert(headers::CLIENT_IP, ip);
    if let Some(id) = &est.identity {
        h.insert(headers::CERT_SUBJECT, id.subject_header.clone());
        h.insert(headers::CERT_SHA256, id.sha256_header.clone());
        if let Some(u) = &id.uri_header {
            h.insert(headers::CERT_URI, u.clone());
        }
    }
    if let Some(k) = &est.key_id {
        h.insert(headers::KEY_ID, k.clone());
    }
    if let Some(s) = &est.jwt_sub {
        h.insert(headers::JWT_SUB, s.clone());
    }
    for (name, value) in &est.jwt_forward {
        h.insert(name.clone(), value.clone());
    }
    h.insert(headers::X_REQUEST_ID, request_id.clone());
}

/// One access-log line, emitted when the response body ends (or is dropped).
pub struct AccessRecord {
    start: Instant,
    method: http::Method,
    path: String,
    route: String,
    client_ip: IpAddr,
    cert_sha256: Option<HeaderValue>,
    key_id: Option<HeaderValue>,
    request_id: HeaderValue,
    verdict: &'static str,
    code: &'static str,
    detail: Cow<'static, str>,
    mode: Mode,
    status: u16,
}

impl AccessRecord {
    #[allow(clippy::too_many_arguments)]
    fn new(
        route: &str,
        method: &http::Method,
        path: &str,
        client_ip: IpAddr,
        est: &Established,
        request_id: &HeaderValue,
        start: Instant,
        mode: Mode,
    ) -> Self {
        AccessRecord {
            start,
            method: method.clone(),
            path: path.to_string(),
            route: route.to_string(),
            client_ip,
            cert_sha256: est.identity.as_ref().map(|i| i.sha256_header.clone()),
            key_id: est.key_id.clone(),
            request_id: request_id.clone(),
            verdict: "allowed",
            code: "allowed",
            detail: Cow::Borrowed(""),
            mode,
            status: 0,
        }
    }

    /// Marks the record as a refusal (`verdict` says whether enforced or only reported).
    fn deny(&mut self, d: &Denial, verdict: &'static str) {
        self.verdict = verdict;
        self.code = d.reject.code();
        self.detail = d.detail.clone();
        self.status = d.reject.status().as_u16();
    }

    /// Writes the access line. Text fields are recorded as `&str`, which the JSON formatter
    /// escapes in one pass; `%` (Display) fields would each go through `core::fmt` and a
    /// per-fragment escaping adapter (a third of the line's cost).
    fn emit(&self, bytes: u64, complete: bool) {
        tracing::info!(
            target: "countersign::access",
            verdict = self.verdict,
            code = self.code,
            status = self.status,
            route = self.route.as_str(),
            method = self.method.as_str(),
            path = self.path.as_str(),
            client_ip = %self.client_ip,
            cert_sha256 = header_str(self.cert_sha256.as_ref()),
            key_id = header_str(self.key_id.as_ref()),
            request_id = header_str(Some(&self.request_id)),
            mode = self.mode.as_str(),
            bytes,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            complete,
            detail = &*self.detail,
            "request"
        );
    }
}

/// A header value as text for the access line, `-` when absent or not visible ASCII.
fn header_str(v: Option<&HeaderValue>) -> &str {
    v.and_then(|v| v.to_str().ok()).unwrap_or("-")
}

pin_project_lite::pin_project! {
    /// A response body that counts its bytes and writes the access line when it ends.
    pub struct Logged<B> {
        #[pin]
        inner: B,
        record: Option<Box<AccessRecord>>,
        bytes: u64,
        expected: Option<u64>,
    }

    impl<B> PinnedDrop for Logged<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(r) = this.record.take() {
                let complete = *this.expected == Some(*this.bytes);
                r.emit(*this.bytes, complete);
            }
        }
    }
}

impl<B: Body> Logged<B> {
    /// Wraps a body; `record` is `None` when this request is not logged.
    pub fn new(inner: B, record: Option<AccessRecord>) -> Self {
        Logged {
            expected: inner.size_hint().exact(),
            inner,
            record: record.map(Box::new),
            bytes: 0,
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Logged<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let r = inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.bytes += d.len() as u64;
                }
                // hyper stops polling once the body says it has ended.
                if inner.is_end_stream()
                    && let Some(rec) = this.record.take()
                {
                    rec.emit(*this.bytes, true);
                }
            }
            Poll::Ready(None) => {
                if let Some(rec) = this.record.take() {
                    rec.emit(*this.bytes, true);
                }
            }
            _ => {}
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
