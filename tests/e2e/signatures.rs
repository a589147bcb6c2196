//! Request signatures through the running sidecar (mTLS + signature routes, a counting backend):
//! every deny code next to its accepted twin, digests and the body limits, replay, and RFC 9421
//! with every algorithm family, several labels and `rfc9421_tag`. Requests are signed with
//! `countersign sign` (in-process); each refusal is checked for status, JSON code, the reason in
//! the access log where it matters, and that the backend never saw it.

use countersign::signature::digest::{DigestAlg, content_digest_value, digest_value};
use countersign::tools::sign::Signed;
use tokio::io::AsyncWriteExt;

use crate::support::*;

const SECRET: &str = "e2e-secret-0123456789abcdef";
const API_KEY: &str = "job-key-1";

fn path(p: &str) -> String {
    fixture(p).display().to_string()
}

fn keys_yaml() -> String {
    let sha = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        API_KEY.as_bytes(),
    ));
    format!(
        "keys:
  - id: k1
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
  - id: k-net
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
    ip_allow: [10.1.2.0/24]
  - id: k-local
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
    ip_allow: [127.0.0.0/8]
  - id: k-later
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
    not_before: 2999-01-01T00:00:00Z
  - id: k-old
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
    not_after: 2001-01-01T00:00:00Z
  - id: k-strict
    algorithm: hmac-sha256
    secret: \"{SECRET}\"
    required: [x-request-id]
  - id: k-rsa
    algorithm: rsa-sha256
    public_key: {}
  - id: api-job
    api_key_sha256: {sha}
  - id: ed
    algorithm: ed25519
    public_key: {}
  - id: p256
    algorithm: ecdsa-p256-sha256
    public_key: {}
  - id: pss
    algorithm: rsa-pss-sha512
    public_key: {}
  - id: shared
    algorithm: hmac-sha256
    secret_file: {}
",
        path("vectors/rfc9421/keys/test-key-rsa-pss.pub.pem"),
        path("vectors/rfc9421/keys/test-key-ed25519.pub.pem"),
        path("vectors/rfc9421/keys/test-key-ecc-p256.pub.pem"),
        path("vectors/rfc9421/keys/test-key-rsa-pss.pub.pem"),
        path("vectors/rfc9421/keys/test-shared-secret.bin"),
    )
}

/// A sidecar requiring mTLS and a signature on `/`, with `signature_yaml` as the `signature:`
/// block's body and `extra` appended (limits, more routes).
async fn start(pki: &Pki, be: &Counting, signature_yaml: &str, routes: &str) -> Sidecar {
    pki.write("keys.yaml", &keys_yaml());
    let yaml = format!(
        "upstream: http://{{UP}}\n{TLS_MTLS}keys: keys.yaml\nsignature:\n  schemes: [cavage, rfc9421]\n{signature_yaml}limits:\n  max_digest_body: 1024\n  body_timeout: 300ms\nroutes:\n{routes}  - path: /\n    require: [mtls, signature]\n"
    );
    Sidecar::start(pki, be.addr, &yaml).await
}

/// A cavage (draft-10) signature with `alg` and a key source (`--secret X` or `--key-file F`).
fn cavage(
    sc: &Sidecar,
    key: &str,
    alg: &str,
    source: [&str; 2],
    p: &str,
    extra: &[&str],
) -> Signed {
    let url = sc.url(p);
    let source = format!("{}={}", source[0], source[1]);
    let mut a = vec![
        "--scheme", "cavage", "--key-id", key, "--alg", alg, &source, "--url", &url,
    ];
    a.extend_from_slice(extra);
    sign(&a)
}

/// An HMAC-SHA256 cavage signature with the shared SECRET.
fn hmac(sc: &Sidecar, key: &str, p: &str, extra: &[&str]) -> Signed {
    cavage(sc, key, "hmac-sha256", ["--secret", SECRET], p, extra)
}

fn at(offset: i64) -> String {
    (unix_now() + offset).to_string()
}

#[tokio::test]
async fn cavage_deny_codes_each_with_its_accepted_twin() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let sc = start(&pki, &be, "", "").await;
    let c = client(&pki, &sc, Some(&pki.client));

    // The accepted twin: the backend hears the key id, the path as sent.
    let ok = hmac(&sc, "k1", "/orders?page=2", &[]);
    let r = send(&c, &ok).await;
    let got = be.allowed(&r, "signed request");
    assert_eq!(echoed(got, "x-countersign-key-id"), ["k1"]);
    assert_eq!(got["target"], "/orders?page=2");
    assert!(echoed(got, "authorization")[0].starts_with("Signature keyId=\"k1\""));

    // signature_missing: nothing at all, or another Authorization scheme.
    let r = reply(c.get(sc.url("/orders?page=2"))).await;
    be.refused(&r, 401, "signature_missing", "no signature");
    let r = send(&c, &with_header(&ok, "Authorization", "Bearer abc.def.ghi")).await;
    be.refused(
        &r,
        401,
        "signature_missing",
        "a Bearer token is no signature",
    );
    // A client's X-Countersign-Key-Id is never believed.
    let r = reply(
        c.get(sc.url("/orders?page=2"))
            .header("X-Countersign-Key-Id", "k1"),
    )
    .await;
    be.refused(&r, 401, "signature_missing", "a forged key id header");

    // malformed_signature: bad base64, a missing comma, no signature parameter, unclosed quote.
    let auth = header_of(&ok, "Authorization").to_string();
    let sig_at = auth.find("signature=\"").unwrap();
    for (bad, what) in [
        (
            format!("{}signature=\"not*base64\"", &auth[..sig_at]),
            "not base64",
        ),
        (
            auth.replacen("\",headers", "\" headers", 1),
            "missing comma",
        ),
        (auth[..sig_at - 1].to_string(), "no signature parameter"),
        (auth.trim_end_matches('"').to_string(), "unterminated quote"),
        (
            format!("{}signature=\"%zz\"", &auth[..sig_at]),
            "bad percent escape",
        ),
    ] {
        let r = send(&c, &with_header(&ok, "Authorization", &bad)).await;
        be.refused(&r, 400, "malformed_signature", what);
    }

    // signature_invalid: path, method, a signed header, the date, the body (digest recomputed),
    // another secret.
    let mut t = ok.clone();
    t.url = sc.url("/orders?page=3");
    be.refused(
        &send(&c, &t).await,
        401,
        "signature_invalid",
        "query tampered",
    );
    let mut t = ok.clone();
    t.url = sc.url("/orders/x?page=2");
    be.refused(
        &send(&c, &t).await,
        401,
        "signature_invalid",
        "path tampered",
    );
    let mut t = ok.clone();
    t.method = "DELETE".into();
    be.refused(
        &send(&c, &t).await,
        401,
        "signature_invalid",
        "method tampered",
    );
    let with_id = hmac(
        &sc,
        "k1",
        "/orders",
        &[
            "-H",
            "X-Request-Id: r-1",
            "--sign-headers",
            "(request-target) host date x-request-id",
        ],
    );
    be.allowed(&send(&c, &with_id).await, "x-request-id signed");
    let r = send(&c, &with_header(&with_id, "X-Request-Id", "r-2")).await;
    be.refused(&r, 401, "signature_invalid", "signed header tampered");
    let date = header_of(&ok, "Date");
    let shifted = httpdate_shift(date);
    let r = send(&c, &with_header(&ok, "Date", &shifted)).await;
    be.refused(&r, 401, "signature_invalid", "date tampered");
    let post = hmac(&sc, "k1", "/orders", &["-X", "POST", "-d", "{\"qty\":1}"]);
    be.allowed(&send(&c, &post).await, "signed POST with a digest");
    let mut t = with_header(
        &post,
        "Digest",
        &digest_value(DigestAlg::Sha256, b"{\"qty\":9}"),
    );
    t.body = b"{\"qty\":9}".to_vec();
    be.refused(
        &send(&c, &t).await,
        401,
        "signature_invalid",
        "body and digest tampered",
    );
    let wrong = cavage(
        &sc,
        "k1",
        "hmac-sha256",
        ["--secret", "another-secret"],
        "/orders?page=2",
        &[],
    );
    be.refused(
        &send(&c, &wrong).await,
        401,
        "signature_invalid",
        "wrong secret",
    );

    // signature_expired: a Date an hour old or ahead, a (created) an hour old or ahead.
    for (offset, list, what) in [
        (-3600, "(request-target) host date", "Date an hour old"),
        (3600, "(request-target) host date", "Date an hour ahead"),
        (
            -3600,
            "(request-target) host (created)",
            "created an hour old",
        ),
        (
            3600,
            "(request-target) host (created)",
            "created an hour ahead",
        ),
    ] {
        let s = hmac(
            &sc,
            "k1",
            "/a",
            &["--sign-headers", list, "--at", &at(offset)],
        );
        be.refused(&send(&c, &s).await, 401, "signature_expired", what);
        let s = hmac(&sc, "k1", "/a", &["--sign-headers", list]);
        be.allowed(&send(&c, &s).await, &format!("twin of {what}"));
    }

    // unknown_key: an id nobody registered, keys outside not_before/not_after, an API key's id.
    for (id, what) in [
        ("nobody", "unregistered key"),
        ("k-later", "key not valid yet"),
        ("k-old", "key expired"),
        ("api-job", "an API key is not a signing key"),
    ] {
        let rid = traced_id();
        let s = hmac(&sc, id, "/a", &["-H", &format!("X-Request-Id: {rid}")]);
        be.refused(&send(&c, &s).await, 401, "unknown_key", what);
        let d = detail_of(&rid).await;
        assert!(d.contains(id), "{what}: {d}");
    }

    // key_not_allowed_from_ip: the key's own ip_allow; its twin allows loopback.
    let r = send(&c, &hmac(&sc, "k-net", "/a", &[])).await;
    be.refused(
        &r,
        403,
        "key_not_allowed_from_ip",
        "key limited to 10.1.2.0/24",
    );
    let r = send(&c, &hmac(&sc, "k-local", "/a", &[])).await;
    assert_eq!(
        be.allowed(&r, "key limited to loopback")["headers"]["x-countersign-key-id"][0],
        "k-local"
    );

    // Coverage: signature.required ((request-target) date) and a key's own `required`.
    let rid = traced_id();
    let s = hmac(
        &sc,
        "k1",
        "/a",
        &[
            "--sign-headers",
            "host date",
            "-H",
            &format!("X-Request-Id: {rid}"),
        ],
    );
    be.refused(
        &send(&c, &s).await,
        401,
        "signature_invalid",
        "(request-target) not covered",
    );
    assert!(
        detail_of(&rid)
            .await
            .contains("does not cover `(request-target)`")
    );
    let rid = traced_id();
    let s = hmac(
        &sc,
        "k-strict",
        "/a",
        &["-H", &format!("X-Request-Id: {rid}")],
    );
    be.refused(
        &send(&c, &s).await,
        401,
        "signature_invalid",
        "key requires x-request-id",
    );
    assert!(detail_of(&rid).await.contains("key `k-strict` requires it"));
    let s = hmac(
        &sc,
        "k-strict",
        "/a",
        &[
            "-H",
            "X-Request-Id: r-5",
            "--sign-headers",
            "(request-target) host date x-request-id",
        ],
    );
    be.allowed(&send(&c, &s).await, "key requirement met");

    // A signature covering `authorization` cannot travel in Authorization; in Signature it can.
    let rid = traced_id();
    let args = [
        "-H",
        "Authorization: Bearer client-token",
        "--sign-headers",
        "(request-target) host date authorization",
    ];
    let mut with_rid = args.to_vec();
    let rid_header = format!("X-Request-Id: {rid}");
    with_rid.extend(["-H", &rid_header]);
    let s = hmac(&sc, "k1", "/a", &with_rid);
    assert!(header_of(&s, "Authorization").starts_with("Signature "));
    be.refused(
        &send(&c, &s).await,
        401,
        "signature_invalid",
        "authorization covered in Authorization",
    );
    let d = detail_of(&rid).await;
    assert!(d.contains("signature_header"), "{d}");
    let mut twin = args.to_vec();
    twin.extend(["--signature-header", "Signature"]);
    let s = hmac(&sc, "k1", "/a", &twin);
    let r = send(&c, &s).await;
    assert_eq!(
        be.allowed(&r, "signature in its own header")["headers"]["authorization"][0],
        "Bearer client-token"
    );

    // Algorithm confusion: the registered algorithm is the truth.
    let rsa_priv =
        path("vectors/rfc9421/keys/derived/test-key-rsa-pss.priv.pkcs8-rsaEncryption.pem");
    let rsa_pub =
        std::fs::read_to_string(path("vectors/rfc9421/keys/test-key-rsa-pss.pub.pem")).unwrap();
    let rid = traced_id();
    let forged = cavage(
        &sc,
        "k-rsa",
        "hmac-sha256",
        ["--secret", &rsa_pub],
        "/a",
        &["-H", &format!("X-Request-Id: {rid}")],
    );
    be.refused(
        &send(&c, &forged).await,
        401,
        "signature_invalid",
        "HMAC keyed with the RSA public key",
    );
    assert!(
        detail_of(&rid)
            .await
            .contains("the registered algorithm is the truth")
    );
    let rid = traced_id();
    let s = cavage(
        &sc,
        "k1",
        "hmac-sha512",
        ["--secret", SECRET],
        "/a",
        &["-H", &format!("X-Request-Id: {rid}")],
    );
    be.refused(
        &send(&c, &s).await,
        401,
        "signature_invalid",
        "hmac-sha512 named for an hmac-sha256 key",
    );
    assert!(
        detail_of(&rid)
            .await
            .contains("the registered algorithm is the truth")
    );
    let genuine = cavage(
        &sc,
        "k-rsa",
        "rsa-sha256",
        ["--key-file", &rsa_priv],
        "/a",
        &[],
    );
    be.allowed(&send(&c, &genuine).await, "the genuine RSA signature");
    // hs2019 names no algorithm: the key's is used.
    let genuine = cavage(
        &sc,
        "k-rsa",
        "rsa-sha256",
        ["--key-file", &rsa_priv],
        "/b",
        &[],
    );
    let hs = header_of(&genuine, "Authorization")
        .replace("algorithm=\"rsa-sha256\"", "algorithm=\"hs2019\"");
    be.allowed(
        &send(&c, &with_header(&genuine, "Authorization", &hs)).await,
        "hs2019",
    );
    sc.stop().await;
}

/// The same IMF-fixdate one second later.
fn httpdate_shift(date: &str) -> String {
    let t = countersign::signature::date::parse(date, &[]).unwrap();
    countersign::signature::date::format_imf(t + std::time::Duration::from_secs(1))
}

/// The request head of a signed request as HTTP/1.1 bytes (no body).
fn head(s: &Signed, sc: &Sidecar, content_length: usize) -> String {
    let url = reqwest::Url::parse(&s.url).unwrap();
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut out = format!(
        "{} {target} HTTP/1.1\r\nHost: localhost:{}\r\n",
        s.method,
        sc.addr.port()
    );
    for (k, v) in &s.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
    out
}

#[tokio::test]
async fn digests_and_the_body_limits() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let sc = start(&pki, &be, "", "").await;
    let c = client(&pki, &sc, Some(&pki.client));
    let body = "{\"order\":42,\"qty\":1}";
    let tampered = "{\"order\":42,\"qty\":9}";

    // Digest (RFC 3230), SHA-256 and SHA-512, covered by a cavage signature.
    for alg in ["sha-256", "sha-512"] {
        let s = hmac(
            &sc,
            "k1",
            "/orders",
            &["-X", "POST", "-d", body, "--digest", alg],
        );
        assert!(header_of(&s, "Authorization").contains("digest"));
        let r = send(&c, &s).await;
        assert_eq!(be.allowed(&r, alg)["body"], body);
        let mut t = s.clone();
        t.body = tampered.as_bytes().to_vec();
        be.refused(&send(&c, &t).await, 401, "digest_mismatch", alg);
    }
    // Content-Digest (RFC 9530) covered by a cavage signature.
    let cd = content_digest_value(DigestAlg::Sha256, body.as_bytes());
    let s = hmac(
        &sc,
        "k1",
        "/orders",
        &[
            "-X",
            "POST",
            "-d",
            body,
            "--digest",
            "none",
            "-H",
            &format!("Content-Digest: {cd}"),
            "--sign-headers",
            "(request-target) host date content-digest",
        ],
    );
    be.allowed(&send(&c, &s).await, "cavage over Content-Digest");
    let mut t = s.clone();
    t.body = tampered.as_bytes().to_vec();
    be.refused(
        &send(&c, &t).await,
        401,
        "digest_mismatch",
        "cavage over Content-Digest",
    );
    // Content-Digest covered by an RFC 9421 signature.
    let url = sc.url("/orders");
    let s = sign(&[
        "--scheme",
        "rfc9421",
        "--key-id",
        "ed",
        "--alg",
        "ed25519",
        "--key-file",
        &path("vectors/rfc9421/keys/test-key-ed25519.priv.pem"),
        "--url",
        &url,
        "-X",
        "POST",
        "-d",
        body,
    ]);
    assert!(header_of(&s, "Signature-Input").contains("\"content-digest\""));
    be.allowed(&send(&c, &s).await, "rfc9421 over Content-Digest");
    let mut t = s.clone();
    t.body = tampered.as_bytes().to_vec();
    be.refused(
        &send(&c, &t).await,
        401,
        "digest_mismatch",
        "rfc9421 over Content-Digest",
    );
    // Without a digest header the body is not checked.
    let s = hmac(
        &sc,
        "k1",
        "/orders",
        &["-X", "POST", "-d", body, "--digest", "none"],
    );
    be.allowed(&send(&c, &s).await, "no digest at all");

    // body_too_large: a covered digest over a body above limits.max_digest_body (1024).
    let big = "x".repeat(2000);
    let small = "x".repeat(1000);
    let s = hmac(&sc, "k1", "/upload", &["-X", "POST", "-d", &big]);
    be.refused(
        &send(&c, &s).await,
        413,
        "body_too_large",
        "2000 bytes with Content-Length",
    );
    let s = hmac(&sc, "k1", "/upload", &["-X", "POST", "-d", &small]);
    be.allowed(&send(&c, &s).await, "1000 bytes");
    // Chunked, no length known up front: refused once the limit is crossed.
    let s = hmac(&sc, "k1", "/upload", &["-X", "POST", "-d", &big]);
    let mut rb = c.post(&s.url);
    for (k, v) in &s.headers {
        rb = rb.header(k, v);
    }
    let r = reply(rb.body(stream_body(20, bytes::Bytes::from("x".repeat(100))))).await;
    be.refused(&r, 413, "body_too_large", "2000 bytes chunked");
    // Without a digest the body is not buffered, so the limit does not apply.
    let s = hmac(
        &sc,
        "k1",
        "/upload",
        &["-X", "POST", "-d", &big, "--digest", "none"],
    );
    let r = send(&c, &s).await;
    assert_eq!(be.allowed(&r, "2000 bytes, no digest")["body_bytes"], 2000);
    // A digest header the signature does not cover counts for nothing: the body still streams
    // (no 413) and the digest is not checked (a wrong one passes).
    let mut s = hmac(
        &sc,
        "k1",
        "/upload",
        &["-X", "POST", "-d", &big, "--digest", "none"],
    );
    s.headers.push((
        "Digest".into(),
        "SHA-256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
    ));
    s.headers.push((
        "Content-Digest".into(),
        "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:".into(),
    ));
    let r = send(&c, &s).await;
    assert_eq!(
        be.allowed(&r, "2000 bytes, uncovered digest")["body_bytes"],
        2000
    );

    // request_timeout: the body trickles past limits.body_timeout (300ms).
    let body100 = "y".repeat(100);
    let s = hmac(&sc, "k1", "/upload", &["-X", "POST", "-d", &body100]);
    let mut conn = tls_connect(&pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    conn.write_all(head(&s, &sc, 100).as_bytes()).await.unwrap();
    conn.write_all(&body100.as_bytes()[..10]).await.unwrap();
    let started = std::time::Instant::now();
    let r = read_response(&mut conn).await.unwrap();
    be.refused(&r, 408, "request_timeout", "trickled body");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The twin: the whole body in time.
    let mut conn = tls_connect(&pki, sc.addr, Some(&pki.client), b"")
        .await
        .unwrap();
    conn.write_all(head(&s, &sc, 100).as_bytes()).await.unwrap();
    conn.write_all(&body100.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    conn.write_all(&body100.as_bytes()[10..]).await.unwrap();
    let r = read_response(&mut conn).await.unwrap();
    assert_eq!(be.allowed(&r, "body in time")["body"], body100.as_str());
    sc.stop().await;
}

#[tokio::test]
async fn replay_memory_refuses_only_what_was_accepted() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let routes = "  - path: /combo\n    require: [mtls, signature, api_key]\n";
    let sc = start(&pki, &be, "  replay: memory\n", routes).await;
    let c = client(&pki, &sc, Some(&pki.client));
    let unique = |id: &str| {
        hmac(
            &sc,
            "k1",
            "/orders",
            &[
                "-H",
                &format!("X-Request-Id: {id}"),
                "--sign-headers",
                "(request-target) host date x-request-id",
            ],
        )
    };

    let first = unique("r-1");
    be.allowed(&send(&c, &first).await, "first use");
    be.refused(
        &send(&c, &first).await,
        401,
        "replayed",
        "the same request again",
    );
    // A tampered copy is refused for the tampering, not as a replay.
    let mut t = first.clone();
    t.url = sc.url("/orders/1");
    be.refused(
        &send(&c, &t).await,
        401,
        "signature_invalid",
        "tampered copy",
    );
    be.refused(
        &send(&c, &with_header(&first, "X-Request-Id", "r-9")).await,
        401,
        "signature_invalid",
        "tampered header",
    );
    // A different signature passes.
    be.allowed(&send(&c, &unique("r-2")).await, "a new request id");

    // A request refused after its signature passed burns nothing: its api_key was missing.
    let combo = hmac(
        &sc,
        "k1",
        "/combo",
        &[
            "-H",
            "X-Request-Id: r-3",
            "--sign-headers",
            "(request-target) host date x-request-id",
        ],
    );
    be.refused(
        &send(&c, &combo).await,
        401,
        "api_key_missing",
        "signed, no API key",
    );
    let keyed = with_header(&combo, "X-Api-Key", API_KEY);
    be.allowed(&send(&c, &keyed).await, "signed with the API key");
    be.refused(&send(&c, &keyed).await, 401, "replayed", "combo again");

    // A digest mismatch burns nothing either.
    let post = hmac(&sc, "k1", "/orders", &["-X", "POST", "-d", "{\"a\":1}"]);
    let mut t = post.clone();
    t.body = b"{\"a\":2}".to_vec();
    be.refused(&send(&c, &t).await, 401, "digest_mismatch", "body tampered");
    be.allowed(&send(&c, &post).await, "the original body");
    be.refused(
        &send(&c, &post).await,
        401,
        "replayed",
        "the original again",
    );
    sc.stop().await;
}

/// An RFC 9421 signature by one of the test keys (`ed`, `p256`, `pss`, `shared`).
fn rfc9421(sc: &Sidecar, key: &str, p: &str, extra: &[&str]) -> Signed {
    let (alg, source, value) = match key {
        "ed" => (
            "ed25519",
            "--key-file",
            path("vectors/rfc9421/keys/test-key-ed25519.priv.pem"),
        ),
        "p256" => (
            "ecdsa-p256-sha256",
            "--key-file",
            path("vectors/rfc9421/keys/test-key-ecc-p256.priv.pem"),
        ),
        "pss" => (
            "rsa-pss-sha512",
            "--key-file",
            path("vectors/rfc9421/keys/test-key-rsa-pss.priv.pem"),
        ),
        _ => (
            "hmac-sha256",
            "--secret-base64",
            std::fs::read_to_string(fixture("vectors/rfc9421/keys/test-shared-secret.b64"))
                .unwrap()
                .trim()
                .to_string(),
        ),
    };
    let url = sc.url(p);
    let mut a = vec![
        "--scheme", "rfc9421", "--key-id", key, "--alg", alg, source, &value, "--url", &url,
    ];
    a.extend_from_slice(extra);
    sign(&a)
}

/// Two signatures in one request: both labels' members in Signature-Input and Signature.
fn both(a: &Signed, b: &Signed) -> Signed {
    let mut out = a.clone();
    for name in ["Signature-Input", "Signature"] {
        let joined = format!("{}, {}", header_of(a, name), header_of(b, name));
        out = with_header(&out, name, &joined);
    }
    out
}

#[tokio::test]
async fn rfc9421_algorithms_components_and_labels() {
    let pki = Pki::new();
    let be = counting_echo().await;
    // A short skew, so an `expires` in the past is refused while `created` is still young.
    let sc = start(&pki, &be, "  clock_skew: 5s\n  max_age: 300s\n", "").await;
    let c = client(&pki, &sc, Some(&pki.client));

    for key in ["ed", "p256", "pss", "shared"] {
        // @method @authority @path @query
        let s = rfc9421(&sc, key, "/orders/7?x=1", &[]);
        let r = send(&c, &s).await;
        assert_eq!(
            be.allowed(&r, key)["headers"]["x-countersign-key-id"][0],
            key
        );
        let mut t = s.clone();
        t.url = sc.url("/orders/7?x=2");
        be.refused(
            &send(&c, &t).await,
            401,
            "signature_invalid",
            &format!("{key}: query tampered"),
        );
        let mut t = s.clone();
        t.url = sc.url("/orders/8?x=1");
        be.refused(
            &send(&c, &t).await,
            401,
            "signature_invalid",
            &format!("{key}: path tampered"),
        );
        let mut t = s.clone();
        t.method = "PUT".into();
        be.refused(
            &send(&c, &t).await,
            401,
            "signature_invalid",
            &format!("{key}: method tampered"),
        );
        let t = with_header(&s, "Host", "other.example");
        be.refused(
            &send(&c, &t).await,
            401,
            "signature_invalid",
            &format!("{key}: authority tampered"),
        );
        // @target-uri
        let s = rfc9421(
            &sc,
            key,
            "/orders/7?x=1",
            &["--components", "@method @target-uri"],
        );
        be.allowed(&send(&c, &s).await, &format!("{key}: @target-uri"));
        let mut t = s.clone();
        t.url = sc.url("/orders/7?x=3");
        be.refused(
            &send(&c, &t).await,
            401,
            "signature_invalid",
            &format!("{key}: @target-uri tampered"),
        );
    }
    // Another signer's key under a registered id.
    let s = rfc9421(&sc, "ed", "/a", &[]);
    let forged = sign(&[
        "--scheme",
        "rfc9421",
        "--key-id",
        "ed",
        "--alg",
        "ed25519",
        "--key-file",
        &fixture("interop/keys/ed25519.key.pem")
            .display()
            .to_string(),
        "--url",
        &s.url,
    ]);
    be.refused(
        &send(&c, &forged).await,
        401,
        "signature_invalid",
        "another ed25519 key",
    );

    // Coverage: without @query the target is not covered; created is required; freshness.
    let s = rfc9421(
        &sc,
        "ed",
        "/a?b=1",
        &["--components", "@method @authority @path"],
    );
    be.refused(
        &send(&c, &s).await,
        401,
        "signature_invalid",
        "@query not covered",
    );
    let s = rfc9421(&sc, "ed", "/a", &["--no-created"]);
    be.refused(&send(&c, &s).await, 401, "signature_invalid", "no created");
    for (offset, what) in [
        (-3600, "created an hour ago"),
        (3600, "created an hour ahead"),
    ] {
        let s = rfc9421(&sc, "p256", "/a", &["--at", &at(offset)]);
        be.refused(&send(&c, &s).await, 401, "signature_expired", what);
    }
    let s = rfc9421(
        &sc,
        "p256",
        "/a",
        &["--at", &at(-100), "--expires-in", "10"],
    );
    be.refused(&send(&c, &s).await, 401, "signature_expired", "expired");
    let s = rfc9421(&sc, "p256", "/a", &["--expires-in", "60"]);
    be.allowed(&send(&c, &s).await, "not yet expired");
    let s = rfc9421(&sc, "nobody", "/a", &[]);
    be.refused(
        &send(&c, &s).await,
        401,
        "unknown_key",
        "unregistered keyid",
    );

    // Algorithm confusion: an HMAC keyed with the Ed25519 public key, alg= naming it.
    let ed_pub =
        std::fs::read_to_string(fixture("vectors/rfc9421/keys/test-key-ed25519.pub.pem")).unwrap();
    let rid = traced_id();
    let url = sc.url("/a");
    let rid_h = format!("X-Request-Id: {rid}");
    let forged = sign(&[
        "--scheme",
        "rfc9421",
        "--key-id",
        "ed",
        "--alg",
        "hmac-sha256",
        &format!("--secret={ed_pub}"),
        "--alg-param",
        "--url",
        &url,
        "-H",
        &rid_h,
    ]);
    be.refused(
        &send(&c, &forged).await,
        401,
        "signature_invalid",
        "alg=hmac-sha256 for an ed25519 key",
    );
    assert!(
        detail_of(&rid)
            .await
            .contains("the registered algorithm is the truth")
    );
    let s = rfc9421(&sc, "ed", "/a", &["--alg-param"]);
    be.allowed(&send(&c, &s).await, "alg=ed25519 for the ed25519 key");

    // Several labels: one good signature is enough, in either order; all bad is refused.
    let good = rfc9421(&sc, "pss", "/multi", &["--label", "good"]);
    let bad = rfc9421(&sc, "nobody", "/multi", &["--label", "bad"]);
    let mut wrong = rfc9421(&sc, "shared", "/multi", &["--label", "wrong"]);
    wrong = with_header(
        &wrong,
        "Signature",
        "wrong=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:",
    );
    be.allowed(&send(&c, &both(&bad, &good)).await, "bad, good");
    be.allowed(&send(&c, &both(&good, &wrong)).await, "good, wrong");
    be.refused(
        &send(&c, &both(&bad, &wrong)).await,
        401,
        "signature_invalid",
        "bad, wrong",
    );
    // Signature-Input without its Signature member.
    let mut t = good.clone();
    t.headers.retain(|(k, _)| k != "Signature");
    let r = send(&c, &t).await;
    be.refused(
        &r,
        400,
        "malformed_signature",
        "input without its signature",
    );
    sc.stop().await;
}

#[tokio::test]
async fn rfc9421_tag_picks_which_signature_must_verify() {
    let pki = Pki::new();
    let be = counting_echo().await;
    let sc = start(&pki, &be, "  rfc9421_tag: gw-edge\n", "").await;
    let c = client(&pki, &sc, Some(&pki.client));
    let tagged = rfc9421(&sc, "ed", "/t", &["--tag", "gw-edge", "--label", "edge"]);
    be.allowed(&send(&c, &tagged).await, "tagged");
    let untagged = rfc9421(&sc, "p256", "/t", &["--label", "other"]);
    be.refused(
        &send(&c, &untagged).await,
        401,
        "signature_missing",
        "untagged only",
    );
    let other_tag = rfc9421(
        &sc,
        "p256",
        "/t",
        &["--tag", "someone-else", "--label", "other"],
    );
    be.refused(
        &send(&c, &other_tag).await,
        401,
        "signature_missing",
        "another tag",
    );
    // The tagged one must verify: a valid untagged signature beside a broken tagged one is refused.
    let broken = with_header(&tagged, "Signature", "edge=:AAAA:");
    be.refused(
        &send(&c, &both(&broken, &untagged)).await,
        401,
        "signature_invalid",
        "tagged broken, untagged fine",
    );
    be.allowed(
        &send(&c, &both(&untagged, &tagged)).await,
        "untagged and tagged, both fine",
    );
    sc.stop().await;
}
