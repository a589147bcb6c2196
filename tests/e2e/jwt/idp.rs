//! A real identity provider on 127.0.0.1 for the token tests: JWKS, OIDC discovery and RFC 7662
//! introspection over HTTP/1.1, with counters, switchable answers and a hard stop (every open
//! connection closes), plus signing keys and a token minter built on ring.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use countersign::config::JwtSettings;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The audience every test token is minted for.
pub const AUD: &str = "orders-api";
/// The introspection client credentials the IdP accepts.
pub const CLIENT_ID: &str = "countersign";
/// (with a character that must be form-encoded)
pub const CLIENT_SECRET: &str = "s3cret+/=";

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The IdP's switchable state and counters.
#[derive(Default)]
pub struct IdpState {
    /// The JWKS document served at /jwks.
    pub jwks: Mutex<Value>,
    /// The issuer the discovery document names (defaults to the IdP's base URL).
    pub issuer: Mutex<String>,
    /// Introspection answers by token; unknown tokens are inactive.
    pub introspect: Mutex<HashMap<String, Value>>,
    /// Delay before answering /jwks.
    pub jwks_delay: Mutex<Duration>,
    /// Answer /jwks, discovery and introspection with 503.
    pub failing: AtomicBool,
    /// GETs of /jwks.
    pub jwks_hits: AtomicUsize,
    /// GETs of the discovery document.
    pub discovery_hits: AtomicUsize,
    /// POSTs to /introspect.
    pub introspect_hits: AtomicUsize,
}

/// A running IdP.
pub struct Idp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state.
    pub state: Arc<IdpState>,
    server: tokio::task::JoinHandle<()>,
}

async fn serve_jwks(State(s): State<Arc<IdpState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let delay = *s.jwks_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = s.jwks.lock().unwrap().clone();
    axum::Json(body).into_response()
}

async fn serve_discovery(State(s): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let host = headers.get("host").unwrap().to_str().unwrap();
    let issuer = s.issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("http://{host}/jwks"),
        "token_endpoint": format!("http://{host}/token"),
    }))
    .into_response()
}

async fn big() -> Response {
    let pad = "x".repeat(2 * 1024 * 1024);
    axum::Json(json!({"keys": [], "pad": pad})).into_response()
}

async fn redirect_away() -> Response {
    (
        StatusCode::FOUND,
        [("location", "http://idp.example.com/jwks")],
    )
        .into_response()
}

async fn serve_introspect(
    State(s): State<Arc<IdpState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    s.introspect_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    // RFC 6749 2.3.1: id and secret are form-encoded before Basic.
    let want = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{}", "s3cret%2B%2F%3D"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8()
                .unwrap()
                .into_owned();
            (k.to_string(), v)
        })
        .collect();
    let Some(token) = form.get("token") else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let answer = s
        .introspect
        .lock()
        .unwrap()
        .get(token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    axum::Json(answer).into_response()
}

impl Idp {
    /// Starts an IdP serving `jwks`.
    pub async fn start(jwks: Value) -> Idp {
        Self::start_on("127.0.0.1:0".parse().unwrap(), jwks).await
    }

    /// Starts an IdP on a given address (to bring one back where it was).
    pub async fn start_on(addr: std::net::SocketAddr, jwks: Value) -> Idp {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(IdpState::default());
        *state.jwks.lock().unwrap() = jwks;
        *state.issuer.lock().unwrap() = format!("http://{addr}");
        let router = Router::new()
            .route("/jwks", get(serve_jwks))
            .route("/.well-known/openid-configuration", get(serve_discovery))
            .route("/introspect", post(serve_introspect))
            .route("/big", get(big))
            .route("/redirect", get(redirect_away))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            // Connections live in this task's JoinSet, so aborting the task closes all of them.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let router = router.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| router.clone().oneshot(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Idp {
            addr,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.base())
    }

    /// Replaces the served JWKS.
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    /// GETs of /jwks so far.
    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection: the IdP is down.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }
}

/// A signing key with its JWK.
pub struct TestKey {
    /// The `kid`.
    pub kid: String,
    /// The JWS algorithm it signs with.
    pub alg: &'static str,
    signer: Signer,
    /// The public JWK (with kid, and alg when pinned).
    pub jwk: Value,
}

enum Signer {
    Rsa(Arc<RsaKeyPair>),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The committed 2048-bit RSA test key (ring cannot generate RSA keys).
pub fn rsa_pair() -> Arc<RsaKeyPair> {
    let pem = include_bytes!("../../fixtures/jwt/keys/rsa-2048.pem");
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem).unwrap();
    Arc::new(RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap())
}

impl TestKey {
    /// The committed RSA key for an RS*/PS* algorithm; `pin` adds `alg` to the JWK.
    pub fn rsa(kid: &str, alg: &'static str, pin: bool) -> TestKey {
        let pair = rsa_pair();
        let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let mut jwk =
            json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)});
        if pin {
            jwk["alg"] = json!(alg);
        }
        TestKey {
            kid: kid.to_string(),
            alg,
            signer: Signer::Rsa(pair),
            jwk,
        }
    }

    /// A fresh EC key: `ES256` (P-256) or `ES384` (P-384).
    pub fn ec(kid: &str, alg: &'static str) -> TestKey {
        let (ring_alg, crv, len) = match alg {
            "ES256" => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            "ES384" => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
            other => panic!("not an EC alg: {other}"),
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(ring_alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(ring_alg, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": crv, "alg": alg,
            "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..]),
        });
        TestKey {
            kid: kid.to_string(),
            alg,
            signer: Signer::Ec(pair),
            jwk,
        }
    }

    /// A fresh Ed25519 key (`EdDSA`).
    pub fn ed25519(kid: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key().as_ref())});
        TestKey {
            kid: kid.to_string(),
            alg: "EdDSA",
            signer: Signer::Ed(pair),
            jwk,
        }
    }

    /// Signs `signing_input` with this key's algorithm (or `alg` for RSA keys).
    pub fn sign_raw(&self, alg: &str, signing_input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let padding: &dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("not an RSA alg: {other}"),
                };
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, signing_input, &mut sig).unwrap();
                sig
            }
            Signer::Ec(pair) => pair.sign(&rng, signing_input).unwrap().as_ref().to_vec(),
            Signer::Ed(pair) => pair.sign(signing_input).as_ref().to_vec(),
        }
    }

    /// A compact JWS with `header` and `claims`, signed as `header.alg` says.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let alg = header["alg"].as_str().unwrap_or(self.alg);
        let sig = self.sign_raw(alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// A token with the usual header (`alg`, `kid`, `typ`).
    pub fn mint(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

/// A JWKS of these keys.
pub fn jwks_of(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// Good claims for `issuer` at `now`, valid for five minutes.
pub fn good_claims(issuer: &str, now: i64) -> Value {
    json!({
        "iss": issuer, "aud": AUD, "sub": "svc-orders", "client_id": "tyk-gateway",
        "scope": "orders:read orders:write", "iat": now, "nbf": now, "exp": now + 300,
    })
}

/// Settings for a JWKS URL, with every algorithm and the defaults of the config loader.
pub fn settings(jwks_url: Option<String>, issuer: &str) -> JwtSettings {
    JwtSettings {
        jwks_url,
        jwks_file: None,
        issuer: Some(issuer.to_string()),
        audience: Some(AUD.to_string()),
        algorithms: [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        jwks_refresh: Duration::from_secs(600),
        jwks_min_refetch: Duration::from_secs(5),
        clock_skew: Duration::from_secs(60),
        max_lifetime: None,
        allowed_clients: Vec::new(),
        forward_token: true,
        forward_claims: Vec::new(),
        introspection: None,
        ca_file: None,
    }
}

/// A header map with `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

/// Waits until `f` is true (at most five seconds).
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5s");
}
