//! The JWKS lifecycle against a real IdP on 127.0.0.1: rotation, refresh, the IdP going down with
//! and without a cached set, kid floods, shared fetches, discovery, files, limits.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use countersign::reject::Reject;
use countersign::token::{self, JwtVerifier};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::idp::{Idp, TestKey, bearer, eventually, good_claims, jwks_of, now_secs, settings};

fn verifier(
    idp: &Idp,
    tweak: impl FnOnce(&mut countersign::config::JwtSettings),
) -> Arc<JwtVerifier> {
    let mut s = settings(Some(idp.jwks_url()), &idp.base());
    tweak(&mut s);
    JwtVerifier::new(&s).unwrap()
}

async fn ok(v: &JwtVerifier, key: &TestKey, issuer: &str) -> bool {
    v.verify(
        &bearer(&key.mint(&good_claims(issuer, now_secs()))),
        SystemTime::now(),
    )
    .await
    .is_ok()
}

/// Runs `body` on a current-thread runtime with a Prometheus recorder of its own, and returns
/// the rendered metrics (the background refresh task runs on the same thread, so it is counted).
fn with_metrics<F: Future<Output = ()>>(body: impl FnOnce() -> F) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
    });
    handle.render()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_new_kid_at_the_idp_is_fetched_on_first_use() {
    let old = TestKey::ec("2024-a", "ES256");
    let idp = Idp::start(jwks_of(&[&old])).await;
    let v = verifier(&idp, |s| s.jwks_min_refetch = Duration::from_millis(200));
    v.spawn_refresh();
    eventually(|| v.is_ready()).await;
    assert!(ok(&v, &old, &idp.base()).await);
    let hits = idp.jwks_hits();

    // Rotation: the IdP publishes a new key and drops the old one.
    let new = TestKey::ed25519("2025-b");
    idp.set_jwks(jwks_of(&[&new]));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        ok(&v, &new, &idp.base()).await,
        "new kid picked up without restart"
    );
    assert_eq!(idp.jwks_hits(), hits + 1);
    // The old key is gone from the fetched set.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let d = v
        .verify(
            &bearer(&old.mint(&good_claims(&idp.base(), now_secs()))),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(d.reject, Reject::TokenInvalid);
    assert!(d.detail.contains("unknown kid \"2024-a\""), "{}", d.detail);
}

#[tokio::test]
async fn the_periodic_refresh_picks_up_rotation() {
    let old = TestKey::ec("p-old", "ES384");
    let idp = Idp::start(jwks_of(&[&old])).await;
    // On-demand refetch effectively off: only the periodic refresh can bring the new key.
    let v = verifier(&idp, |s| {
        s.jwks_refresh = Duration::from_secs(1);
        s.jwks_min_refetch = Duration::from_secs(3600);
    });
    v.spawn_refresh();
    v.spawn_refresh(); // idempotent: one task
    eventually(|| v.is_ready()).await;
    let new = TestKey::rsa("p-new", "RS256", true);
    idp.set_jwks(jwks_of(&[&old, &new]));
    assert!(
        !ok(&v, &new, &idp.base()).await,
        "rate-limited before the refresh"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(ok(&v, &new, &idp.base()).await);
    assert!(ok(&v, &old, &idp.base()).await);
    // Two tasks would have fetched about twice as often.
    let hits = idp.jwks_hits();
    assert!((2..=3).contains(&hits), "{hits} fetches in ~1.3s");
}

#[test]
fn idp_down_with_a_cached_set_keeps_verifying() {
    let text = with_metrics(|| async {
        let key = TestKey::ec("k1", "ES256");
        let idp = Idp::start(jwks_of(&[&key])).await;
        let issuer = idp.base();
        let v = verifier(&idp, |s| {
            s.jwks_refresh = Duration::from_secs(1);
            s.jwks_min_refetch = Duration::from_millis(100);
        });
        v.spawn_refresh();
        eventually(|| v.is_ready()).await;
        idp.stop().await;
        // Refreshes now fail (connection refused); the last good set stays.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert!(v.is_ready());
        assert!(ok(&v, &key, &issuer).await);
        // An unknown kid still refetches (and fails), and is refused as invalid, not 503.
        let other = TestKey::ec("k2", "ES256");
        let d = v
            .verify(
                &bearer(&other.mint(&good_claims(&issuer, now_secs()))),
                SystemTime::now(),
            )
            .await
            .unwrap_err();
        assert_eq!(d.reject, Reject::TokenInvalid);
    });
    assert!(
        metric(
            &text,
            token::JWKS_FETCH_TOTAL,
            &["trigger=\"refresh\"", "result=\"ok\""]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            token::JWKS_FETCH_TOTAL,
            &["trigger=\"refresh\"", "result=\"error\""]
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(metric(&text, token::JWKS_KEYS, &[]), 1.0, "{text}");
}

#[test]
fn idp_down_with_nothing_cached_is_503_until_it_recovers() {
    let text = with_metrics(|| async {
        let key = TestKey::ed25519("k");
        let idp = Idp::start(jwks_of(&[&key])).await;
        idp.state.failing.store(true, Ordering::SeqCst);
        let v = verifier(&idp, |s| s.jwks_min_refetch = Duration::from_millis(300));
        assert!(!v.is_ready());
        let token = key.mint(&good_claims(&idp.base(), now_secs()));
        let d = v
            .verify(&bearer(&token), SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(d.reject, Reject::JwksUnavailable);
        assert_eq!(d.reject.status(), 503);
        assert!(d.detail.contains("HTTP status 503"), "{}", d.detail);
        // Inside min_refetch: refused without another fetch.
        let hits = idp.jwks_hits();
        let d = v
            .verify(&bearer(&token), SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(d.reject, Reject::JwksUnavailable);
        assert_eq!(idp.jwks_hits(), hits);
        assert!(!v.is_ready());
        // The IdP comes back.
        idp.state.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(v.verify(&bearer(&token), SystemTime::now()).await.is_ok());
        assert!(v.is_ready());
    });
    assert_eq!(
        metric(
            &text,
            token::JWKS_FETCH_TOTAL,
            &["trigger=\"cold\"", "result=\"error\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            token::JWKS_FETCH_TOTAL,
            &["trigger=\"cold\"", "result=\"rate_limited\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            token::JWKS_FETCH_TOTAL,
            &["trigger=\"cold\"", "result=\"ok\""]
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_closed_idp_port_is_503_not_401() {
    let key = TestKey::ec("k", "ES256");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let (url, issuer) = (idp.jwks_url(), idp.base());
    idp.stop().await;
    let mut s = settings(Some(url), &issuer);
    s.jwks_min_refetch = Duration::ZERO;
    let v = JwtVerifier::new(&s).unwrap();
    let d = v
        .verify(
            &bearer(&key.mint(&good_claims(&issuer, now_secs()))),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(d.reject, Reject::JwksUnavailable);
    assert!(d.detail.contains("no JWKS loaded yet"), "{}", d.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_does_not_hammer_the_idp() {
    let key = TestKey::ec("real", "ES256");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let v = verifier(&idp, |s| s.jwks_min_refetch = Duration::from_secs(1));
    v.spawn_refresh();
    eventually(|| v.is_ready()).await;
    let issuer = idp.base();
    let flood = |round: usize| {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let v = v.clone();
            let attacker = TestKey::ec(&format!("random-{round}-{i}"), "ES256");
            let t = attacker.mint(&good_claims(&issuer, now_secs()));
            tasks.spawn(async move { v.verify(&bearer(&t), SystemTime::now()).await });
        }
        tasks
    };
    let before = idp.jwks_hits();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for r in flood(1).join_all().await {
        assert_eq!(r.unwrap_err().reject, Reject::TokenInvalid);
    }
    let after_first = idp.jwks_hits();
    assert_eq!(after_first, before + 1, "200 unknown kids: one fetch");
    for r in flood(2).join_all().await {
        assert_eq!(r.unwrap_err().reject, Reject::TokenInvalid);
    }
    assert_eq!(
        idp.jwks_hits(),
        after_first,
        "inside min_refetch: no fetch at all"
    );
    // Real tokens keep working through the flood.
    assert!(ok(&v, &key, &issuer).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_the_same_new_kid_share_one_fetch() {
    let old = TestKey::ec("old", "ES256");
    let idp = Idp::start(jwks_of(&[&old])).await;
    let v = verifier(&idp, |s| s.jwks_min_refetch = Duration::ZERO);
    v.spawn_refresh();
    eventually(|| v.is_ready()).await;
    let new = Arc::new(TestKey::ed25519("new"));
    idp.set_jwks(jwks_of(&[&old, &new]));
    *idp.state.jwks_delay.lock().unwrap() = Duration::from_millis(300);
    let before = idp.jwks_hits();
    let token = new.mint(&good_claims(&idp.base(), now_secs()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let v = v.clone();
        let t = token.clone();
        tasks.spawn(async move { v.verify(&bearer(&t), SystemTime::now()).await });
    }
    for r in tasks.join_all().await {
        assert!(r.is_ok());
    }
    assert_eq!(idp.jwks_hits(), before + 1);
}

#[tokio::test]
async fn oidc_discovery_finds_the_jwks() {
    let key = TestKey::rsa("disc", "PS256", true);
    let idp = Idp::start(jwks_of(&[&key])).await;
    let v = JwtVerifier::new(&settings(None, &idp.base())).unwrap();
    v.spawn_refresh();
    eventually(|| v.is_ready()).await;
    assert!(ok(&v, &key, &idp.base()).await);
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(idp.jwks_hits(), 1);

    // A trailing slash in the configured issuer is the same discovery URL; the document must
    // then name that exact issuer.
    let slash = format!("{}/", idp.base());
    *idp.state.issuer.lock().unwrap() = slash.clone();
    let v = JwtVerifier::new(&settings(None, &slash)).unwrap();
    let t = key.mint(&good_claims(&slash, now_secs()));
    assert!(v.verify(&bearer(&t), SystemTime::now()).await.is_ok());
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let key = TestKey::ec("k", "ES256");
    let idp = Idp::start(jwks_of(&[&key])).await;
    *idp.state.issuer.lock().unwrap() = "https://evil.example".to_string();
    let v = JwtVerifier::new(&settings(None, &idp.base())).unwrap();
    let d = v
        .verify(
            &bearer(&key.mint(&good_claims(&idp.base(), now_secs()))),
            SystemTime::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(d.reject, Reject::JwksUnavailable);
    assert!(
        d.detail.contains("not the configured issuer"),
        "{}",
        d.detail
    );
    assert_eq!(idp.jwks_hits(), 0);
}

#[tokio::test]
async fn oversized_and_redirected_jwks_are_not_loaded() {
    let key = TestKey::ec("k", "ES256");
    let idp = Idp::start(jwks_of(&[&key])).await;
    for (path, want) in [("big", "larger than"), ("redirect", "redirect")] {
        let mut s = settings(Some(format!("{}/{path}", idp.base())), &idp.base());
        s.jwks_min_refetch = Duration::ZERO;
        let v = JwtVerifier::new(&s).unwrap();
        let d = v
            .verify(
                &bearer(&key.mint(&good_claims(&idp.base(), now_secs()))),
                SystemTime::now(),
            )
            .await
            .unwrap_err();
        assert_eq!(d.reject, Reject::JwksUnavailable, "{path}");
        assert!(d.detail.contains(want), "{path}: {}", d.detail);
    }
}

#[tokio::test]
async fn a_jwks_file_loads_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let a = TestKey::ec("file-a", "ES256");
    std::fs::write(&path, jwks_of(&[&a]).to_string()).unwrap();
    let mut s = settings(None, "https://idp.example/");
    s.jwks_file = Some(path.clone());
    let v = JwtVerifier::new(&s).unwrap();
    assert!(v.is_ready());
    assert_eq!(v.jwks_file(), Some(path.as_path()));
    assert!(ok(&v, &a, "https://idp.example/").await);

    let b = TestKey::ed25519("file-b");
    std::fs::write(&path, jwks_of(&[&b]).to_string()).unwrap();
    assert!(
        !ok(&v, &b, "https://idp.example/").await,
        "not before reload"
    );
    assert_eq!(v.reload(), Ok(1));
    assert!(ok(&v, &b, "https://idp.example/").await);
    assert!(!ok(&v, &a, "https://idp.example/").await);

    // A broken file keeps the last good set.
    std::fs::write(&path, "{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}").unwrap();
    let e = v.reload().unwrap_err();
    assert!(e.contains("no usable signing key"), "{e}");
    assert!(ok(&v, &b, "https://idp.example/").await);

    // A missing or unusable file at start is a configuration error naming the field.
    s.jwks_file = Some(dir.path().join("absent.json"));
    let e = JwtVerifier::new(&s).unwrap_err().to_string();
    assert!(e.starts_with("jwt.jwks_file: "), "{e}");
}
