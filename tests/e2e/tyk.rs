//! Tyk's request signing on the wire, through the running sidecar: a Tyk signer written from
//! `TYK.md` (independently of countersign's own signer and verifier) produces exactly what Tyk's
//! `mw_request_signing.go` puts on the wire, then Tyk's reverse proxy changes what it changes
//! after signing (hop-by-hop headers removed, `User-Agent` and `X-Forwarded-For` added), and the
//! raw bytes go to the sidecar over mTLS. Also: `[signature, jwt]` with `signature_header`.

#[path = "../common/tyk_signer.rs"]
mod tyk_signer;

use crate::jwt::idp::{Idp, TestKey, good_claims, jwks_of};
use crate::support::*;
use tyk_signer::*;

impl GoRequest {
    /// What Tyk's reverse proxy does after signing: hop-by-hop headers removed, `User-Agent`
    /// added when the client sent none, the client IP appended to `X-Forwarded-For`.
    fn proxy(&mut self) {
        for h in [
            "Connection",
            "Proxy-Connection",
            "Keep-Alive",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "Te",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
        ] {
            self.del(h);
        }
        if self.get("User-Agent").is_empty() {
            self.set("User-Agent", "Tyk/v5.3.0");
        }
        let xff = match self.get("X-Forwarded-For") {
            p if p.is_empty() => "198.51.100.20".to_string(),
            p => format!("{p}, 198.51.100.20"),
        };
        self.set("X-Forwarded-For", &xff);
    }

    /// The request as Tyk sends it to `target` (Go's `Header.Write`: one line per value, trimmed).
    fn wire(&self, target: &str, port: u16) -> Vec<u8> {
        let mut out = format!(
            "{} {target} HTTP/1.1\r\nHost: localhost:{port}\r\n",
            self.method
        );
        for (k, vs) in &self.header {
            for v in vs {
                out.push_str(&format!("{k}: {}\r\n", v.trim()));
            }
        }
        if !self.body.is_empty() && self.get("Content-Length").is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

fn keys_yaml() -> String {
    format!(
        "keys:
  - id: tyk-gw-1
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
  - id: tyk-gw-sha1
    algorithm: hmac-sha1
    legacy_sha1: true
    secret: \"{SECRET}\"
  - id: tyk-gw-384
    algorithm: hmac-sha384
    secret: \"{SECRET}\"
  - id: tyk-gw-512
    algorithm: hmac-sha512
    secret: \"{SECRET}\"
  - id: tyk-gw-rsa
    algorithm: rsa-sha256
    public_key: {}
",
        fixture("vectors/rfc9421/keys/test-key-rsa-pss.pub.pem").display()
    )
}

/// A sidecar behind Tyk: mTLS, a signature on every route, `signature` as the block's body.
async fn start(pki: &Pki, be: &Counting, signature: &str) -> Sidecar {
    pki.write("keys.yaml", &keys_yaml());
    let yaml = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}keys: keys.yaml\nsignature:\n  schemes: [tyk]\n{signature}routes:\n  - path: /\n    require: [mtls, signature]\n"
    );
    Sidecar::start(pki, be.addr, &yaml).await
}

/// Sends a Tyk-signed request (after Tyk's proxy changes) to `target` on the sidecar.
async fn deliver(pki: &Pki, sc: &Sidecar, r: &GoRequest, target: &str) -> Reply {
    let mut r = r.clone();
    r.proxy();
    exchange(
        pki,
        sc.addr,
        Some(&pki.client),
        &r.wire(target, sc.addr.port()),
    )
    .await
}

const EXAMPLE_AUTH: &str = "Signature keyId=\"tyk-gw-1\",algorithm=\"hmac-sha256\",headers=\"(request-target) x-request-id accept date\",signature=\"ynXNa1Uv6RS8an9Oj2hQ1Q0p%2FTV8r6CtSIfnxJDt7aI%3D\"";

fn example_request(auth: &str) -> GoRequest {
    GoRequest::new(
        "GET",
        "/orders/42?expand=items&page=2",
        &[
            ("X-Request-Id", "r-1"),
            ("Accept", "application/json"),
            ("Date", "Thu, 04 Dec 2025 10:00:00 UTC"),
            ("Authorization", auth),
        ],
    )
}

#[tokio::test]
async fn tyk_md_worked_example_byte_for_byte() {
    let pki = Pki::new();
    let be = counting_echo().await;
    // The example is dated 2025: only a very wide window accepts it.
    let sc = start(&pki, &be, "  clock_skew: 36500d\n").await;

    // The independent signer reproduces the example header exactly.
    let mut g = GoRequest::new(
        "GET",
        "/orders/42?expand=items&page=2",
        &[
            ("X-Request-Id", "r-1"),
            ("Accept", "application/json"),
            ("Date", "Thu, 04 Dec 2025 10:00:00 UTC"),
        ],
    );
    let base = tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        unix_now(),
        None,
    );
    assert_eq!(
        base,
        "(request-target): get /orders/42?expand=items&page=2\nx-request-id: r-1\naccept: application/json\ndate: Thu, 04 Dec 2025 10:00:00 UTC"
    );
    assert_eq!(g.get("Authorization"), EXAMPLE_AUTH);

    // The example's bytes, exactly as on the wire (no proxy changes at all).
    let wire = format!(
        "GET /orders/42?expand=items&page=2 HTTP/1.1\r\nHost: localhost:{}\r\nX-Request-Id: r-1\r\nAccept: application/json\r\nDate: Thu, 04 Dec 2025 10:00:00 UTC\r\nAuthorization: {EXAMPLE_AUTH}\r\n\r\n",
        sc.addr.port()
    );
    let r = exchange(&pki, sc.addr, Some(&pki.client), wire.as_bytes()).await;
    let got = be.allowed(&r, "the worked example");
    assert_eq!(got["target"], "/orders/42?expand=items&page=2");
    assert_eq!(echoed(got, "x-countersign-key-id"), ["tyk-gw-1"]);
    assert_eq!(echoed(got, "date"), ["Thu, 04 Dec 2025 10:00:00 UTC"]);
    // With Tyk's proxy changes (User-Agent, X-Forwarded-For added after signing).
    let r = deliver(
        &pki,
        &sc,
        &example_request(EXAMPLE_AUTH),
        "/orders/42?expand=items&page=2",
    )
    .await;
    be.allowed(&r, "the worked example via Tyk's proxy");
    // Escapes in lower case, or none at all, are the same signature.
    for (v, what) in [
        (
            "ynXNa1Uv6RS8an9Oj2hQ1Q0p%2fTV8r6CtSIfnxJDt7aI%3d",
            "lower-case escapes",
        ),
        (
            "ynXNa1Uv6RS8an9Oj2hQ1Q0p/TV8r6CtSIfnxJDt7aI=",
            "plain base64",
        ),
    ] {
        let auth = EXAMPLE_AUTH.replace("ynXNa1Uv6RS8an9Oj2hQ1Q0p%2FTV8r6CtSIfnxJDt7aI%3D", v);
        let r = deliver(
            &pki,
            &sc,
            &example_request(&auth),
            "/orders/42?expand=items&page=2",
        )
        .await;
        be.allowed(&r, what);
    }
    // Tampered twins: the query, a signed header, the date, the signature.
    let r = deliver(
        &pki,
        &sc,
        &example_request(EXAMPLE_AUTH),
        "/orders/42?expand=items&page=3",
    )
    .await;
    be.refused(&r, 401, "signature_invalid", "query tampered");
    let mut t = example_request(EXAMPLE_AUTH);
    t.set("X-Request-Id", "r-2");
    be.refused(
        &deliver(&pki, &sc, &t, "/orders/42?expand=items&page=2").await,
        401,
        "signature_invalid",
        "x-request-id tampered",
    );
    let mut t = example_request(EXAMPLE_AUTH);
    t.set("Date", "Thu, 04 Dec 2025 10:00:01 UTC");
    be.refused(
        &deliver(&pki, &sc, &t, "/orders/42?expand=items&page=2").await,
        401,
        "signature_invalid",
        "date tampered",
    );
    let t = example_request(&EXAMPLE_AUTH.replace("ynXN", "ynXM"));
    be.refused(
        &deliver(&pki, &sc, &t, "/orders/42?expand=items&page=2").await,
        401,
        "signature_invalid",
        "signature tampered",
    );
    sc.stop().await;

    // With the default 300 s window the 2025 example is stale.
    let pki = Pki::new();
    let sc = start(&pki, &be, "").await;
    let r = deliver(
        &pki,
        &sc,
        &example_request(EXAMPLE_AUTH),
        "/orders/42?expand=items&page=2",
    )
    .await;
    be.refused(
        &r,
        401,
        "signature_expired",
        "the example with the default clock_skew",
    );
    sc.stop().await;
}

#[tokio::test]
async fn default_header_list_in_random_orders_every_algorithm() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let sc = start(&pki, &be, "").await;
    let body = "{\"sku\":\"A-1\",\"qty\":2}";
    let mut orders = std::collections::HashSet::new();
    for seed in 0..6u64 {
        for api in TykApi::every() {
            let what = format!("{} seed {seed}", api.algorithm);
            let mut g = GoRequest::new(
                "POST",
                "/orders?x=1",
                &[
                    ("Accept", "application/json"),
                    ("Content-Type", "application/json"),
                    ("User-Agent", "curl/8.5.0"),
                    ("X-Request-Id", &format!("r-{seed}")),
                    ("Content-Length", &body.len().to_string()),
                ],
            );
            g.body = body.to_string();
            tyk_sign(&api, &mut g, unix_now(), Some(seed));
            let auth = g.get("Authorization");
            orders.insert(
                auth.split("headers=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string(),
            );
            if api.rsa.is_none() && api.algorithm != "hmac-sha384" {
                assert!(auth.ends_with("%3D\""), "{auth}");
            }
            let r = deliver(&pki, &sc, &g, "/orders?x=1").await;
            let got = be.allowed(&r, &what);
            assert_eq!(echoed(got, "x-countersign-key-id"), [api.key_id]);
            assert_eq!(got["body"], body);
            assert!(echoed(got, "date")[0].ends_with(" UTC"));
            let r = deliver(&pki, &sc, &g, "/orders?x=2").await;
            be.refused(
                &r,
                401,
                "signature_invalid",
                &format!("{what}, query tampered"),
            );
            let mut t = g.clone();
            t.set("Content-Type", "text/plain");
            be.refused(
                &deliver(&pki, &sc, &t, "/orders?x=1").await,
                401,
                "signature_invalid",
                &format!("{what}, content-type tampered"),
            );
            let mut t = g.clone();
            t.set("Authorization", &auth.replace(api.key_id, "tyk-gw-unknown"));
            be.refused(
                &deliver(&pki, &sc, &t, "/orders?x=1").await,
                401,
                "unknown_key",
                &format!("{what}, key id"),
            );
        }
    }
    assert!(orders.len() > 3, "the header order should vary: {orders:?}");

    // The gateway's time zone: UTC, GMT and numeric offsets are understood; an unknown
    // abbreviation is refused as malformed rather than guessed.
    let now = time::OffsetDateTime::now_utc();
    let plus4 = now.to_offset(time::UtcOffset::from_hms(4, 0, 0).unwrap());
    let fmt = |t: time::OffsetDateTime, zone: &str| {
        let f = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second]"
        );
        format!("{} {zone}", t.format(&f).unwrap())
    };
    for (date, ok) in [
        (fmt(now, "UTC"), true),
        (fmt(now, "GMT"), true),
        (fmt(plus4, "+04"), true),
        (fmt(now, "CET"), false),
    ] {
        let mut g = GoRequest::new("GET", "/zone", &[("Date", &date)]);
        tyk_sign(
            &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
            &mut g,
            unix_now(),
            Some(1),
        );
        let r = deliver(&pki, &sc, &g, "/zone").await;
        if ok {
            be.allowed(&r, &date);
        } else {
            be.refused(&r, 400, "malformed_signature", &date);
        }
    }
    sc.stop().await;

    // hmac-sha1 is refused at start unless the key opts in.
    pki.write(
        "keys.yaml",
        &format!("keys:\n  - id: old\n    algorithm: hmac-sha1\n    secret: \"{SECRET}\"\n"),
    );
    std::fs::write(
        pki.path().join("countersign.yaml"),
        format!("listen: 127.0.0.1:0\nupstream: http://{}\nkeys: keys.yaml\nroutes:\n  - path: /\n    require: [signature]\n", be.addr),
    )
    .unwrap();
    let config = countersign::config::Config::load(&pki.path().join("countersign.yaml")).unwrap();
    let err = match countersign::server::start(config).await {
        Ok(_) => panic!("an hmac-sha1 key without legacy_sha1 must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("legacy_sha1"), "{err}");
}

#[tokio::test]
async fn signature_header_signature_and_a_custom_header() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let sc = start(&pki, &be, "").await;
    let client_request = || {
        GoRequest::new(
            "GET",
            "/a",
            &[
                ("Authorization", "Bearer client-token"),
                ("X-Request-Id", "r-1"),
            ],
        )
    };

    // signature_header: "Signature": the client's Authorization is signed and passes untouched.
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.signature_header = Some("Signature");
    let mut g = client_request();
    tyk_sign(&api, &mut g, unix_now(), Some(3));
    assert!(g.get("Signature").starts_with("Signature keyId="));
    assert!(g.get("Signature").contains("authorization"));
    let r = deliver(&pki, &sc, &g, "/a").await;
    let got = be.allowed(&r, "signature in Signature");
    assert_eq!(echoed(got, "authorization"), ["Bearer client-token"]);
    let mut t = g.clone();
    t.set("Authorization", "Bearer someone-else");
    be.refused(
        &deliver(&pki, &sc, &t, "/a").await,
        401,
        "signature_invalid",
        "Authorization swapped",
    );

    // Without signature_header Tyk overwrites the Authorization it signed: never verifiable, and
    // the log says which Tyk setting fixes it.
    let rid = traced_id();
    let mut g = client_request();
    g.set("X-Request-Id", &rid);
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        unix_now(),
        Some(3),
    );
    be.refused(
        &deliver(&pki, &sc, &g, "/a").await,
        401,
        "signature_invalid",
        "authorization covered in Authorization",
    );
    let d = detail_of(&rid).await;
    assert!(d.contains("request_signing.signature_header"), "{d}");

    // signature_header: x-tyk-signature (Go writes X-Tyk-Signature): found only when configured.
    let mut api = TykApi::hmac("tyk-gw-512", "hmac-sha512");
    api.signature_header = Some("x-tyk-signature");
    let mut g = client_request();
    tyk_sign(&api, &mut g, unix_now(), Some(5));
    assert!(g.header.iter().any(|(k, _)| k == "X-Tyk-Signature"));
    be.refused(
        &deliver(&pki, &sc, &g, "/a").await,
        401,
        "signature_missing",
        "X-Tyk-Signature not configured",
    );
    sc.stop().await;
    let pki = Pki::new();
    let sc = start(&pki, &be, "  cavage_header: X-Tyk-Signature\n").await;
    let r = deliver(&pki, &sc, &g, "/a").await;
    assert_eq!(
        be.allowed(&r, "X-Tyk-Signature configured")["headers"]["x-countersign-key-id"][0],
        "tyk-gw-512"
    );
    let mut t = g.clone();
    t.set("X-Request-Id", "r-2");
    be.refused(
        &deliver(&pki, &sc, &t, "/a").await,
        401,
        "signature_invalid",
        "X-Tyk-Signature, header tampered",
    );
    sc.stop().await;
}

#[tokio::test]
async fn tyk_compat_quirks_and_hop_by_hop_headers() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let strict = start(&pki, &be, "").await;
    let pki2 = Pki::new();
    let compat = start(&pki2, &be, "  tyk_compat: true\n").await;
    let pki3 = Pki::new();
    let lenient = start(
        &pki3,
        &be,
        "  tyk_compat: true\n  tyk_absent_headers_empty: true\n",
    )
    .await;
    let api = TykApi::hmac("tyk-gw-1", "hmac-sha256");

    // X-Aux-Date stands in for Date (tyk_compat): the Date is an hour old, X-Aux-Date is fresh.
    let mut g = GoRequest::new(
        "GET",
        "/aux",
        &[
            ("X-Aux-Date", &go_date(unix_now())),
            ("Date", &go_date(unix_now() - 3600).replace("UTC", "GMT")),
        ],
    );
    let base = tyk_sign(&api, &mut g, unix_now(), Some(2));
    assert!(
        !base.contains("\ndate: ") && !base.starts_with("date: "),
        "{base}"
    );
    be.allowed(
        &deliver(&pki2, &compat, &g, "/aux").await,
        "X-Aux-Date with tyk_compat",
    );
    be.refused(
        &deliver(&pki, &strict, &g, "/aux").await,
        401,
        "signature_invalid",
        "X-Aux-Date without tyk_compat",
    );
    // A stale X-Aux-Date is stale, whatever Date says.
    let mut g = GoRequest::new(
        "GET",
        "/aux",
        &[
            ("X-Aux-Date", &go_date(unix_now() - 3600)),
            ("Date", &go_date(unix_now())),
        ],
    );
    tyk_sign(&api, &mut g, unix_now(), Some(2));
    be.refused(
        &deliver(&pki2, &compat, &g, "/aux").await,
        401,
        "signature_expired",
        "stale X-Aux-Date",
    );

    // A repeated header: Tyk signs the first value; the draft joins them.
    let mut g = GoRequest::new(
        "GET",
        "/rep",
        &[("Accept", "application/json"), ("Accept", "text/plain")],
    );
    tyk_sign(&api, &mut g, unix_now(), Some(4));
    let r = deliver(&pki2, &compat, &g, "/rep").await;
    assert_eq!(
        be.allowed(&r, "repeated header with tyk_compat")["headers"]["accept"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    be.refused(
        &deliver(&pki, &strict, &g, "/rep").await,
        401,
        "signature_invalid",
        "repeated header without tyk_compat",
    );
    // The draft's join, as a strict signer does it, passes the strict sidecar.
    let url = strict.url("/rep");
    let s = sign(&[
        "--scheme",
        "cavage",
        "--key-id",
        "tyk-gw-1",
        "--alg",
        "hmac-sha256",
        "--secret",
        SECRET,
        "--url",
        &url,
        "-H",
        "Accept: application/json",
        "-H",
        "Accept: text/plain",
        "--sign-headers",
        "(request-target) date accept",
    ]);
    let c = client(&pki, &strict, Some(&pki.client));
    be.allowed(&send(&c, &s).await, "joined values, strict");

    // `Connection: keep-alive` is in Tyk's default list, and Tyk's proxy deletes it after
    // signing: the signed value is gone, so no setting can verify it (Tyk's own verifier fails
    // too). The fix is on the Tyk side (a header_list, or clients that send no Connection).
    let rid = traced_id();
    let mut g = GoRequest::new(
        "GET",
        "/hop",
        &[("Connection", "keep-alive"), ("X-Request-Id", &rid)],
    );
    tyk_sign(&api, &mut g, unix_now(), Some(6));
    assert!(g.get("Authorization").contains("connection"));
    be.refused(
        &deliver(&pki, &strict, &g, "/hop").await,
        401,
        "signature_invalid",
        "connection listed, absent (strict)",
    );
    let d = detail_of(&rid).await;
    assert!(
        d.contains("`connection`") && d.contains("header_list"),
        "{d}"
    );
    be.refused(
        &deliver(&pki2, &compat, &g, "/hop").await,
        401,
        "signature_invalid",
        "connection listed, absent (tyk_compat)",
    );
    be.refused(
        &deliver(&pki3, &lenient, &g, "/hop").await,
        401,
        "signature_invalid",
        "connection listed, absent (tyk_absent_headers_empty)",
    );
    // Had it arrived, it is verified as sent, and still not forwarded.
    let mut with_conn = g.clone();
    with_conn.proxy();
    with_conn.set("Connection", "keep-alive");
    let r = exchange(
        &pki,
        strict.addr,
        Some(&pki.client),
        &with_conn.wire("/hop", strict.addr.port()),
    )
    .await;
    let got = be.allowed(&r, "connection present");
    assert!(got["headers"]["connection"].is_null());
    // tyk_absent_headers_empty reads a listed-but-absent header as empty, as Tyk's verifier does:
    // it rescues a header that was empty when signed and dropped on the way.
    let mut g = GoRequest::new("GET", "/empty", &[("X-Debug", ""), ("X-Request-Id", "r-8")]);
    tyk_sign(&api, &mut g, unix_now(), Some(7));
    assert!(g.get("Authorization").contains("x-debug"));
    be.allowed(
        &deliver(&pki, &strict, &g, "/empty").await,
        "empty header present (strict)",
    );
    let mut dropped = g.clone();
    dropped.del("X-Debug");
    be.refused(
        &deliver(&pki, &strict, &dropped, "/empty").await,
        401,
        "signature_invalid",
        "empty header dropped (strict)",
    );
    be.refused(
        &deliver(&pki2, &compat, &dropped, "/empty").await,
        401,
        "signature_invalid",
        "empty header dropped (tyk_compat)",
    );
    be.allowed(
        &deliver(&pki3, &lenient, &dropped, "/empty").await,
        "empty header dropped (tyk_absent_headers_empty)",
    );
    for sc in [strict, compat, lenient] {
        sc.stop().await;
    }
}

#[tokio::test]
async fn strip_path_prefix_for_a_target_url_with_a_path() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let plain = start(&pki, &be, "").await;
    let pki2 = Pki::new();
    let stripped = start(&pki2, &be, "  strip_path_prefix: /api\n").await;
    // Tyk signs /items?page=2; target_url http://backend/api makes the request line /api/items?page=2.
    let mut g = GoRequest::new("GET", "/items?page=2", &[("X-Request-Id", "r-1")]);
    tyk_sign(
        &TykApi::hmac("tyk-gw-384", "hmac-sha384"),
        &mut g,
        unix_now(),
        Some(0),
    );
    be.refused(
        &deliver(&pki, &plain, &g, "/api/items?page=2").await,
        401,
        "signature_invalid",
        "without strip_path_prefix",
    );
    let r = deliver(&pki2, &stripped, &g, "/api/items?page=2").await;
    assert_eq!(
        be.allowed(&r, "with strip_path_prefix")["target"],
        "/api/items?page=2"
    );
    be.refused(
        &deliver(&pki2, &stripped, &g, "/apix/items?page=2").await,
        401,
        "signature_invalid",
        "outside the prefix",
    );
    be.refused(
        &deliver(&pki2, &stripped, &g, "/api/items?page=3").await,
        401,
        "signature_invalid",
        "query tampered",
    );
    plain.stop().await;
    stripped.stop().await;
}

#[tokio::test]
async fn header_list_without_request_target() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let strict = start(&pki, &be, "").await;
    let pki2 = Pki::new();
    let by_id = start(&pki2, &be, "  required: [x-request-id, date]\n").await;
    // header_list: X-Request-Id, (request-target), host, Date: Tyk keeps the case and drops the
    // two pseudo headers.
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.header_list = vec!["X-Request-Id", "(request-target)", "host", "Date"];
    let rid = traced_id();
    let mut g = GoRequest::new(
        "GET",
        "/a",
        &[("X-Request-Id", &rid), ("Date", &go_date(unix_now()))],
    );
    tyk_sign(&api, &mut g, unix_now(), None);
    assert!(
        g.get("Authorization")
            .contains("headers=\"X-Request-Id Date\"")
    );
    be.refused(
        &deliver(&pki, &strict, &g, "/a").await,
        401,
        "signature_invalid",
        "(request-target) required",
    );
    let d = detail_of(&rid).await;
    assert!(d.contains("header_list"), "{d}");
    let r = deliver(&pki2, &by_id, &g, "/a").await;
    assert_eq!(
        be.allowed(&r, "required allows it")["headers"]["x-countersign-key-id"][0],
        "tyk-gw-1"
    );
    // What that policy gives up: the path is not signed.
    be.allowed(
        &deliver(&pki2, &by_id, &g, "/b").await,
        "another path, same signature",
    );
    let mut t = g.clone();
    t.set("X-Request-Id", "r-10");
    be.refused(
        &deliver(&pki2, &by_id, &t, "/a").await,
        401,
        "signature_invalid",
        "x-request-id tampered",
    );
    strict.stop().await;
    by_id.stop().await;
}

#[tokio::test]
async fn signature_and_jwt_with_signature_header() {
    let key = TestKey::ed25519("k1");
    let idp = Idp::start(jwks_of(&[&key])).await;
    let pki = Pki::new();
    let be = counting_echo().await;
    pki.write("keys.yaml", &keys_yaml());
    let yaml = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}keys: keys.yaml\njwt:\n  jwks_url: {}\n  issuer: {}\n  audience: {}\nroutes:\n  - path: /\n    require: [mtls, signature, jwt]\n    scopes: [orders:read]\n",
        idp.jwks_url(),
        idp.base(),
        crate::jwt::idp::AUD
    );
    let sc = Sidecar::start(&pki, be.addr, &yaml).await;
    eventually(5, || async {
        plain_client()
            .get(format!("http://{}/readyz", sc.admin))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    })
    .await;
    let now = unix_now();
    let token = key.mint(&good_claims(&idp.base(), now));
    let mut api = TykApi::hmac("tyk-gw-1", "hmac-sha256");
    api.signature_header = Some("Signature");
    let request = |bearer: Option<&str>| {
        let mut g = GoRequest::new("GET", "/orders", &[("X-Request-Id", "r-1")]);
        if let Some(b) = bearer {
            g.set("Authorization", &format!("Bearer {b}"));
        }
        g
    };

    // The bearer stays in Authorization (and is signed), the signature rides in Signature.
    let mut g = request(Some(&token));
    tyk_sign(&api, &mut g, unix_now(), Some(1));
    let r = deliver(&pki, &sc, &g, "/orders").await;
    let got = be.allowed(&r, "signature and token");
    assert_eq!(echoed(got, "x-countersign-key-id"), ["tyk-gw-1"]);
    assert_eq!(echoed(got, "x-countersign-jwt-sub"), ["svc-orders"]);
    assert_eq!(
        echoed(got, "authorization"),
        [format!("Bearer {token}").as_str()]
    );

    // Another valid token swapped in after signing: the signature covers it.
    let other = key.mint(&good_claims(&idp.base(), now - 1));
    let mut t = g.clone();
    t.set("Authorization", &format!("Bearer {other}"));
    be.refused(
        &deliver(&pki, &sc, &t, "/orders").await,
        401,
        "signature_invalid",
        "bearer swapped",
    );
    // A good signature over a bad token, or over none.
    let mut expired = good_claims(&idp.base(), now - 3600);
    expired["exp"] = serde_json::json!(now - 1800);
    let mut g = request(Some(&key.mint(&expired)));
    tyk_sign(&api, &mut g, unix_now(), Some(2));
    let r = deliver(&pki, &sc, &g, "/orders").await;
    be.refused(&r, 401, "token_invalid", "signed, token expired");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let mut g = request(None);
    tyk_sign(&api, &mut g, unix_now(), Some(2));
    be.refused(
        &deliver(&pki, &sc, &g, "/orders").await,
        401,
        "token_missing",
        "signed, no token",
    );
    // A token lacking the route's scope.
    let mut narrow = good_claims(&idp.base(), now);
    narrow["scope"] = serde_json::json!("orders:write");
    let mut g = request(Some(&key.mint(&narrow)));
    tyk_sign(&api, &mut g, unix_now(), Some(2));
    be.refused(
        &deliver(&pki, &sc, &g, "/orders").await,
        403,
        "insufficient_scope",
        "signed, scope missing",
    );
    // A good token, the signature tampered.
    let mut g = request(Some(&token));
    tyk_sign(&api, &mut g, unix_now(), Some(3));
    let mut t = g.clone();
    t.set("X-Request-Id", "r-2");
    be.refused(
        &deliver(&pki, &sc, &t, "/orders").await,
        401,
        "signature_invalid",
        "token fine, signature tampered",
    );
    // Without signature_header, Tyk overwrites the bearer with the signature.
    let mut g = request(Some(&token));
    tyk_sign(
        &TykApi::hmac("tyk-gw-1", "hmac-sha256"),
        &mut g,
        unix_now(),
        Some(3),
    );
    be.refused(
        &deliver(&pki, &sc, &g, "/orders").await,
        401,
        "signature_invalid",
        "signature in Authorization",
    );
    sc.stop().await;
}
