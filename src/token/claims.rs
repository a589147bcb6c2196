//! Claim checks (RFC 7519 section 4.1, RFC 9068) on a verified JWT payload or an introspection
//! answer, and what a passing token tells the backend.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::JwtSettings;

/// The longest value copied from a claim into a forwarded header, in bytes.
const MAX_FORWARDED_VALUE: usize = 4096;

/// What a verified token says about its caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `sub`.
    pub sub: Option<String>,
    /// Scopes from `scope` (space-separated) and `scp` (array or space-separated string).
    pub scopes: Vec<String>,
    /// Headers for the backend from `jwt.forward_claims`, in configuration order; a claim that is
    /// absent, `null`, too long or not a valid header value is left out.
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// `client_id`, or `azp` when there is no `client_id`.
    pub client_id: Option<String>,
}

impl Claims {
    /// True when every scope in `required` was granted.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|r| self.scopes.iter().any(|s| s == r))
    }
}

/// The claim rules from `jwt:`, prepared once.
#[derive(Debug, Clone)]
pub struct Policy {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: i64,
    max_lifetime: Option<i64>,
    allowed_clients: Vec<String>,
    forward_claims: Vec<(String, HeaderName)>,
}

impl Policy {
    /// The rules of `settings`.
    pub fn new(settings: &JwtSettings) -> Policy {
        Policy {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: secs(settings.clock_skew),
            max_lifetime: settings.max_lifetime.map(secs),
            allowed_clients: settings.allowed_clients.clone(),
            forward_claims: settings.forward_claims.clone(),
        }
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// `aud`, or `scp`: one string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The claims countersign reads; an introspection answer (RFC 7662 section 2.2) has the same
/// members plus `active`.
#[derive(Deserialize)]
pub(crate) struct RawClaims<'a> {
    #[serde(borrow)]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sub: Option<Cow<'a, str>>,
    aud: Option<OneOrMany>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    #[serde(borrow)]
    azp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    scope: Option<Cow<'a, str>>,
    scp: Option<OneOrMany>,
    /// Introspection only.
    pub(crate) active: Option<bool>,
}

impl RawClaims<'_> {
    /// `exp` in whole seconds, when present.
    pub(crate) fn exp(&self) -> Option<i64> {
        self.exp.map(whole)
    }
}

fn whole(t: f64) -> i64 {
    // Saturating float-to-int conversion; NaN (impossible from JSON) would be 0.
    t.floor() as i64
}

/// Parses a payload as a JSON object of claims. The detail names the position, never the value.
pub(crate) fn parse(payload: &[u8]) -> Result<RawClaims<'_>, Cow<'static, str>> {
    serde_json::from_slice(payload).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "a claim has the wrong type or is repeated",
            _ => "the claims are not a JSON object",
        };
        Cow::Owned(format!("{what} (column {})", e.column()))
    })
}

/// Checks the claims at `now` (Unix seconds). `exp` is required for JWTs; introspection answers
/// may omit it.
pub(crate) fn check(
    c: &RawClaims<'_>,
    policy: &Policy,
    now: i64,
    exp_required: bool,
) -> Result<(), Cow<'static, str>> {
    if let Some(want) = &policy.issuer {
        match c.iss.as_deref() {
            Some(iss) if iss == want => {}
            Some(_) => return Err("iss is not the configured issuer".into()),
            None if exp_required => return Err("iss is missing".into()),
            None => {}
        }
    }
    if let Some(want) = &policy.audience {
        let ok = match &c.aud {
            Some(OneOrMany::One(a)) => a == want,
            Some(OneOrMany::Many(list)) => list.iter().any(|a| a == want),
            None => !exp_required,
        };
        if !ok {
            return Err(match &c.aud {
                None => "aud is missing".into(),
                Some(_) => "aud does not contain the configured audience".into(),
            });
        }
    }
    let leeway = policy.leeway;
    let exp = c.exp.map(whole);
    match exp {
        Some(exp) if now >= exp.saturating_add(leeway) => {
            return Err(format!("expired: exp {exp} is {}s before now", now - exp).into());
        }
        Some(_) => {}
        None if exp_required => return Err("exp is missing".into()),
        None => {}
    }
    if let Some(nbf) = c.nbf.map(whole)
        && nbf > now.saturating_add(leeway)
    {
        return Err(format!("not yet valid: nbf {nbf} is {}s after now", nbf - now).into());
    }
    let iat = c.iat.map(whole);
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(format!(
            "issued in the future: iat {iat} is {}s after now",
            iat - now
        )
        .into());
    }
    if let (Some(max), Some(exp)) = (policy.max_lifetime, exp) {
        let lifetime = exp.saturating_sub(iat.unwrap_or(now));
        if lifetime > max {
            return Err(format!("lifetime {lifetime}s is longer than max_lifetime {max}s").into());
        }
    }
    if !policy.allowed_clients.is_empty() {
        let allowed = |v: &Option<Cow<'_, str>>| {
            v.as_deref()
                .is_none_or(|id| policy.allowed_clients.iter().any(|a| a == id))
        };
        if c.azp.is_none() && c.client_id.is_none() {
            return Err("no azp or client_id, and allowed_clients is set".into());
        }
        if !allowed(&c.azp) {
            return Err("azp is not in allowed_clients".into());
        }
        if !allowed(&c.client_id) {
            return Err("client_id is not in allowed_clients".into());
        }
    }
    Ok(())
}

/// What the caller learns from checked claims; `payload` is re-read only for `forward_claims`.
pub(crate) fn claims(c: &RawClaims<'_>, payload: &[u8], policy: &Policy) -> Claims {
    let mut scopes = Vec::new();
    if let Some(s) = &c.scope {
        scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
    }
    match &c.scp {
        Some(OneOrMany::One(s)) => {
            scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
        }
        Some(OneOrMany::Many(list)) => scopes.extend(list.iter().cloned()),
        None => {}
    }
    Claims {
        sub: c.sub.as_deref().map(str::to_string),
        scopes,
        forward: forward(payload, &policy.forward_claims),
        client_id: c
            .client_id
            .as_deref()
            .or(c.azp.as_deref())
            .map(str::to_string),
    }
}

fn forward(payload: &[u8], wanted: &[(String, HeaderName)]) -> Vec<(HeaderName, HeaderValue)> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload)
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(wanted.len());
    for (claim, header) in wanted {
        let text = match map.get(claim) {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(serde_json::Value::Array(items))
                if items.iter().all(|i| i.is_string() || i.is_number()) =>
            {
                Cow::Owned(
                    items
                        .iter()
                        .map(|i| match i {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
            Some(other) => Cow::Owned(other.to_string()),
        };
        if text.len() > MAX_FORWARDED_VALUE {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(text.as_bytes()) {
            out.push((header.clone(), v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn policy() -> Policy {
        Policy {
            issuer: Some("https://idp.example/".into()),
            audience: Some("orders-api".into()),
            leeway: 60,
            max_lifetime: None,
            allowed_clients: Vec::new(),
            forward_claims: Vec::new(),
        }
    }

    fn run(p: &Policy, json: serde_json::Value) -> Result<Claims, Cow<'static, str>> {
        let bytes = serde_json::to_vec(&json).unwrap();
        let c = parse(&bytes)?;
        check(&c, p, NOW, true)?;
        Ok(claims(&c, &bytes, p))
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://idp.example/", "aud": "orders-api", "sub": "svc-1",
            "exp": NOW + 300, "iat": NOW - 10, "nbf": NOW - 10,
            "scope": "orders:read  orders:write", "client_id": "tyk"
        })
    }

    fn with(f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> serde_json::Value {
        let mut v = good();
        f(v.as_object_mut().unwrap());
        v
    }

    fn err(p: &Policy, v: serde_json::Value) -> String {
        run(p, v).unwrap_err().into_owned()
    }

    #[test]
    fn good_claims_pass_and_give_sub_scopes_client() {
        let c = run(&policy(), good()).unwrap();
        assert_eq!(c.sub.as_deref(), Some("svc-1"));
        assert_eq!(c.scopes, ["orders:read", "orders:write"]);
        assert_eq!(c.client_id.as_deref(), Some("tyk"));
        assert!(c.has_scopes(&["orders:read".into()]));
        assert!(c.has_scopes(&[]));
        assert!(!c.has_scopes(&["orders:admin".into()]));
    }

    #[test]
    fn issuer_and_audience() {
        let p = policy();
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("iss".into(), "https://idp.example".into());
                })
            )
            .contains("iss")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.remove("iss");
                })
            )
            .contains("iss is missing")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("aud".into(), "other".into());
                })
            )
            .contains("aud does not contain")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("aud".into(), serde_json::json!(["a", "b"]));
                })
            )
            .contains("aud")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.remove("aud");
                })
            )
            .contains("aud is missing")
        );
        assert!(
            run(
                &p,
                with(|m| {
                    m.insert("aud".into(), serde_json::json!(["a", "orders-api"]));
                })
            )
            .is_ok()
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("aud".into(), serde_json::json!(7));
                })
            )
            .contains("wrong type")
        );
    }

    #[test]
    fn times_with_leeway() {
        let p = policy();
        assert!(
            err(
                &p,
                with(|m| {
                    m.remove("exp");
                })
            )
            .contains("exp is missing")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("exp".into(), (NOW - 60).into());
                })
            )
            .contains("expired")
        );
        assert!(
            run(
                &p,
                with(|m| {
                    m.insert("exp".into(), (NOW - 59).into());
                })
            )
            .is_ok()
        );
        assert!(
            run(
                &p,
                with(|m| {
                    m.insert("exp".into(), serde_json::json!(NOW as f64 + 0.5));
                })
            )
            .is_ok()
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("exp".into(), "2030".into());
                })
            )
            .contains("wrong type")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("nbf".into(), (NOW + 61).into());
                })
            )
            .contains("not yet valid")
        );
        assert!(
            run(
                &p,
                with(|m| {
                    m.insert("nbf".into(), (NOW + 60).into());
                })
            )
            .is_ok()
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("iat".into(), (NOW + 61).into());
                })
            )
            .contains("issued in the future")
        );
        assert!(
            run(
                &p,
                with(|m| {
                    m.insert("iat".into(), (NOW + 60).into());
                })
            )
            .is_ok()
        );
    }

    #[test]
    fn max_lifetime() {
        let mut p = policy();
        p.max_lifetime = Some(300);
        assert!(
            run(
                &p,
                with(|m| {
                    m.insert("iat".into(), NOW.into());
                    m.insert("exp".into(), (NOW + 300).into());
                })
            )
            .is_ok()
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("iat".into(), NOW.into());
                    m.insert("exp".into(), (NOW + 301).into());
                })
            )
            .contains("max_lifetime")
        );
        // Without iat, the remaining lifetime counts.
        assert!(
            err(
                &p,
                with(|m| {
                    m.remove("iat");
                    m.insert("exp".into(), (NOW + 3600).into());
                })
            )
            .contains("max_lifetime")
        );
        assert!(
            run(
                &p,
                with(|m| {
                    m.remove("iat");
                })
            )
            .is_ok()
        );
    }

    #[test]
    fn allowed_clients() {
        let mut p = policy();
        p.allowed_clients = vec!["tyk".into(), "batch".into()];
        assert!(run(&p, good()).is_ok());
        assert!(
            run(
                &p,
                with(|m| {
                    m.remove("client_id");
                    m.insert("azp".into(), "batch".into());
                })
            )
            .is_ok()
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("client_id".into(), "mallory".into());
                })
            )
            .contains("client_id is not in")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.insert("azp".into(), "mallory".into());
                })
            )
            .contains("azp is not in")
        );
        assert!(
            err(
                &p,
                with(|m| {
                    m.remove("client_id");
                })
            )
            .contains("no azp or client_id")
        );
    }

    #[test]
    fn scp_array_or_string() {
        let p = policy();
        let c = run(
            &p,
            with(|m| {
                m.remove("scope");
                m.insert("scp".into(), serde_json::json!(["a", "b"]));
            }),
        )
        .unwrap();
        assert_eq!(c.scopes, ["a", "b"]);
        let c = run(
            &p,
            with(|m| {
                m.remove("scope");
                m.insert("scp".into(), "a b".into());
            }),
        )
        .unwrap();
        assert_eq!(c.scopes, ["a", "b"]);
        let c = run(
            &p,
            with(|m| {
                m.remove("scope");
            }),
        )
        .unwrap();
        assert!(c.scopes.is_empty() && !c.has_scopes(&["a".into()]));
    }

    #[test]
    fn forwarded_claims() {
        let mut p = policy();
        let h = |s: &'static str| HeaderName::from_static(s);
        p.forward_claims = vec![
            ("tenant".into(), h("x-tenant")),
            ("roles".into(), h("x-roles")),
            ("n".into(), h("x-n")),
            ("nested".into(), h("x-nested")),
            ("absent".into(), h("x-absent")),
            ("bad".into(), h("x-bad")),
        ];
        let c = run(
            &p,
            with(|m| {
                m.insert("tenant".into(), "acme".into());
                m.insert("roles".into(), serde_json::json!(["r1", "r2"]));
                m.insert("n".into(), 5.into());
                m.insert("nested".into(), serde_json::json!({"a": 1}));
                m.insert("bad".into(), "line\r\nbreak".into());
            }),
        )
        .unwrap();
        let got: Vec<(String, String)> = c
            .forward
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-tenant".to_string(), "acme".to_string()),
                ("x-roles".into(), "r1 r2".into()),
                ("x-n".into(), "5".into()),
                ("x-nested".into(), "{\"a\":1}".into()),
            ]
        );
    }

    #[test]
    fn not_an_object_and_duplicates() {
        let p = policy();
        assert!(parse(b"[1,2]").is_err());
        assert!(parse(b"not json").is_err());
        let dup = br#"{"exp":1,"exp":2}"#;
        assert!(parse(dup).is_err());
        assert!(check(&parse(b"{}").unwrap(), &p, NOW, true).is_err());
    }
}
