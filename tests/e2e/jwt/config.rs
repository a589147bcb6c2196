//! The `jwt:` section as the config loader reads it, and a verifier built from it.

use std::path::Path;
use std::time::Duration;

use countersign::config::Config;
use countersign::token::JwtVerifier;

fn load(jwt: &str) -> Result<Config, String> {
    let yaml = format!(
        "upstream: http://127.0.0.1:8080\nroutes:\n  - path: /\n    require: [jwt]\n    scopes: [orders:read]\njwt:\n{jwt}"
    );
    Config::from_yaml_str(&yaml, Path::new("c.yaml"), Path::new("/etc/cs"))
        .map_err(|e| e.to_string())
}

#[test]
fn a_client_credentials_setup_loads_and_builds() {
    let c = load(
        "  jwks_url: https://auth.example.com/.well-known/jwks.json\n  issuer: https://auth.example.com/\n  audience: orders-api\n  algorithms: [RS256, ES256]\n  jwks_refresh: 5m\n  jwks_min_refetch: 10s\n  clock_skew: 30s\n  max_lifetime: 1h\n  allowed_clients: [tyk-gateway]\n  forward_token: false\n  forward_claims:\n    - {claim: tenant, header: X-Tenant}\n  ca_file: idp-ca.pem\n",
    )
    .unwrap();
    assert_eq!(c.routes[0].scopes, ["orders:read"]);
    let j = c.jwt.unwrap();
    assert_eq!(j.jwks_refresh, Duration::from_secs(300));
    assert_eq!(j.max_lifetime, Some(Duration::from_secs(3600)));
    assert!(!j.forward_token);
    assert_eq!(j.ca_file.as_deref(), Some(Path::new("/etc/cs/idp-ca.pem")));
    let mut j = j;
    j.ca_file = None;
    let v = JwtVerifier::new(&j).unwrap();
    assert!(
        !v.is_ready(),
        "nothing fetched before spawn_refresh or a request"
    );
}

#[test]
fn audience_is_required_and_discovery_needs_https() {
    let e = load("  jwks_url: https://auth.example.com/jwks\n").unwrap_err();
    assert!(e.contains("c.yaml: jwt.audience: required"), "{e}");
    let e = load("  issuer: http://auth.example.com/\n  audience: a\n").unwrap_err();
    assert!(
        e.contains("c.yaml: jwt.issuer: OIDC discovery needs an https:// issuer"),
        "{e}"
    );
    let e = load(
        "  jwks_url: http://auth.example.com/jwks\n  audience: a\n  algorithms: [HS256, none]\n",
    )
    .unwrap_err();
    assert!(e.contains("jwt.jwks_url: must be https://"), "{e}");
    assert!(
        e.contains("jwt.algorithms[0]: `HS256` is not accepted"),
        "{e}"
    );
    assert!(
        e.contains("jwt.algorithms[1]: `none` is not accepted"),
        "{e}"
    );
}

#[test]
fn introspection_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let yaml = "upstream: http://127.0.0.1:8080\nroutes:\n  - path: /\n    require: [jwt]\njwt:\n  audience: orders-api\n  introspection:\n    url: https://auth.example.com/introspect\n    client_id: cs\n    client_secret_file: secret\n    cache_ttl: 1m\n";
    let c = Config::from_yaml_str(yaml, Path::new("c.yaml"), dir.path()).unwrap();
    let i = c.jwt.as_ref().unwrap().introspection.as_ref().unwrap();
    assert_eq!(i.client_secret, "s3cret");
    assert_eq!(i.cache_ttl, Duration::from_secs(60));
    assert_eq!(i.cache_size, 10_000);
    let v = JwtVerifier::new(c.jwt.as_ref().unwrap()).unwrap();
    assert!(v.is_ready());
}

#[test]
fn the_verifier_refuses_plain_http_to_other_hosts_itself() {
    let mut s = super::idp::settings(
        Some("http://idp.example.com/jwks".into()),
        "https://idp.example.com/",
    );
    assert!(
        JwtVerifier::new(&s)
            .unwrap_err()
            .to_string()
            .starts_with("jwt.jwks_url: must be https://")
    );
    s.jwks_url = None;
    s.issuer = Some("http://idp.example.com".into());
    assert!(
        JwtVerifier::new(&s)
            .unwrap_err()
            .to_string()
            .starts_with("jwt.issuer: ")
    );
}
