//! `countersign check`: load everything `run` would, open no listening socket, print a summary,
//! the warnings and every problem as `path: message`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{ClientAuth, Config, Mode, Requirement};
use crate::state::Snapshot;

/// Checks `path`; exit 0 valid (warnings allowed), 2 invalid.
pub fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // A remote key registry is fetched once, as `run` would; nothing else is contacted (a Redis
    // replay store's URL is only parsed).
    let built = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(Snapshot::load(config, None)),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match built {
        Ok(s) => {
            print!("{}", summary(&s));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The human summary of a loaded snapshot, warnings last.
pub fn summary(s: &Snapshot) -> String {
    let c = &s.config;
    let mut out = String::new();
    let _ = writeln!(out, "{}: valid", c.source.display());
    let tls = match &c.tls {
        Some(t) if t.terminates() => match (&t.client_ca, t.client_auth) {
            (Some(_), ClientAuth::Required) => "TLS, client certificate required",
            (Some(_), ClientAuth::Optional) => "TLS, client certificate optional",
            (None, _) => "TLS",
        },
        _ => "plain HTTP (TLS terminated in front)",
    };
    let _ = writeln!(out, "listen:   {} ({tls})", c.listen);
    let _ = writeln!(
        out,
        "upstream: {}{}",
        c.upstream.uri,
        if c.upstream.http2 { " (h2c)" } else { "" }
    );
    if let Some(a) = c.admin {
        let _ = writeln!(out, "admin:    {a}");
    }
    let _ = writeln!(out, "mode:     {}", c.mode.as_str());
    if let crate::config::ReplaySetting::Redis(r) = &c.signature.replay {
        let _ = writeln!(
            out,
            "replay:   {} (shared; {} on error; check does not connect)",
            r.redacted(),
            r.on_error.as_str()
        );
    }
    let _ = writeln!(out, "routes:");
    for r in s.routes.iter() {
        let methods = if r.methods.is_empty() {
            "*".to_string()
        } else {
            r.methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let req = if r.require.is_empty() {
            "(anonymous)".to_string()
        } else {
            r.require
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let scopes = if r.scopes.is_empty() {
            String::new()
        } else {
            format!(" scopes: {}", r.scopes.join(" "))
        };
        let mode = if r.mode == Mode::Report && c.mode != Mode::Report {
            " [report]"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:<24} {:<12} require: {req}{scopes}{mode}",
            r.prefix, methods
        );
    }
    if let Some(r) = &s.registry {
        let source = match &c.keys {
            Some(crate::config::KeySource::File(p)) => p.display().to_string(),
            Some(crate::config::KeySource::Url(u)) => u.clone(),
            None => String::new(),
        };
        let _ = writeln!(out, "keys: {source} ({} keys)", r.len());
        for k in r.summary() {
            let ip = if k.ip_allow.is_empty() {
                String::new()
            } else {
                format!("  from {}", k.ip_allow.join(", "))
            };
            let _ = writeln!(
                out,
                "  {:<24} {:<18} {}  valid {}{ip}",
                k.id, k.algorithm, k.fingerprint, k.validity
            );
        }
    }
    if let Some(t) = &s.tls
        && !t.expiries.is_empty()
    {
        let _ = writeln!(out, "certificates:");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for e in &t.expiries {
            let when = time::OffsetDateTime::from_unix_timestamp(e.unix)
                .ok()
                .and_then(|d| {
                    d.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| e.unix.to_string());
            let days = (e.unix - now) / 86400;
            let verb = if e.name.starts_with("crl:") {
                "next update"
            } else {
                "expires"
            };
            let state = if e.unix < now {
                " EXPIRED".to_string()
            } else {
                format!(" (in {days} days)")
            };
            let _ = writeln!(out, "  {:<28} {verb} {when}{state}  {}", e.name, e.file);
        }
    }
    let warnings = warnings(s);
    if !warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for w in warnings {
            let _ = writeln!(out, "  {}: {w}", c.source.display());
        }
    }
    out
}

/// Things that are allowed but probably not meant.
pub fn warnings(s: &Snapshot) -> Vec<String> {
    let c = &s.config;
    let mut w = Vec::new();
    if c.mode == Mode::Report {
        w.push(
            "mode: report: nothing is refused; every verdict is only logged and counted"
                .to_string(),
        );
    }
    if let Some(t) = &c.tls {
        if t.client_ca.is_some()
            && t.allow_clients.is_empty()
            && c.any_route_requires(Requirement::Mtls)
        {
            w.push(
                "tls.allow_clients is empty: any certificate the client CA issued is accepted"
                    .to_string(),
            );
        }
        if let Some(ts) = &s.tls {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            for e in &ts.expiries {
                if e.unix < now {
                    w.push(format!("{} ({}) has expired", e.name, e.file));
                } else if e.unix - now < t.expiry_warning.as_secs() as i64 {
                    w.push(format!(
                        "{} ({}) expires within tls.expiry_warning",
                        e.name, e.file
                    ));
                }
            }
        }
    }
    if let Some(r) = &s.registry {
        w.extend(r.warnings().iter().cloned());
    }
    if c.keys.is_some() || c.any_route_requires(Requirement::Signature) {
        w.extend(crate::signature::config_warnings(&c.signature));
    }
    if c.ip_allow.iter().any(|n| n.prefix_len() == 0) {
        w.push("ip_allow contains a network that admits every address".to_string());
    }
    if c.tls.as_ref().is_none_or(|t| !t.terminates()) && !c.listen.ip().is_loopback() {
        w.push("the listener is plain HTTP on a non-loopback address: TLS must be terminated in front of it".to_string());
    }
    for r in s.routes.iter() {
        if r.require.is_empty() && r.prefix == "/" {
            w.push(
                "the catch-all route / requires nothing: every request is forwarded".to_string(),
            );
        }
    }
    w
}
