//! Step 5b: choose the route (first match by path prefix and method). Next: the route's
//! requirements, checked in `app.rs`.

use http::Method;

use crate::config::{Mode, Requirement, RouteSettings};
use crate::metrics::RouteMetrics;

/// A route ready for matching, with its pre-registered metrics.
#[derive(Debug)]
pub struct Route {
    /// The metric label.
    pub name: String,
    /// The prefix, matched on whole segments.
    pub prefix: String,
    /// Methods matched; empty matches any.
    pub methods: Vec<Method>,
    /// What must pass, in order.
    pub require: Vec<Requirement>,
    /// JWT scopes required.
    pub scopes: Vec<String>,
    /// Enforce or report.
    pub mode: Mode,
    /// Counters and histograms for this route.
    pub metrics: RouteMetrics,
}

/// The route table, first match wins.
#[derive(Debug, Default)]
pub struct Routes {
    list: Vec<Route>,
}

/// True when `path` is `prefix` or lies below it on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

impl Routes {
    /// Builds the table, registering each route's metrics.
    pub fn new(settings: &[RouteSettings]) -> Self {
        Routes {
            list: settings
                .iter()
                .map(|r| Route {
                    name: r.name.clone(),
                    prefix: r.path.clone(),
                    methods: r.methods.clone(),
                    require: r.require.clone(),
                    scopes: r.scopes.clone(),
                    mode: r.mode,
                    metrics: RouteMetrics::new(&r.name),
                })
                .collect(),
        }
    }

    /// The first route matching `method` and the (normalized) `path`.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.list.iter().find(|r| {
            prefix_matches(&r.prefix, path) && (r.methods.is_empty() || r.methods.contains(method))
        })
    }

    /// All routes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, methods: &[&str]) -> RouteSettings {
        RouteSettings {
            name: path.to_string(),
            path: path.to_string(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            require: vec![],
            scopes: vec![],
            mode: Mode::Enforce,
        }
    }

    #[test]
    fn segment_prefix() {
        assert!(prefix_matches("/admin", "/admin"));
        assert!(prefix_matches("/admin", "/admin/x"));
        assert!(!prefix_matches("/admin", "/administrator"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
    }

    #[test]
    fn first_match_by_path_and_method() {
        let r = Routes::new(&[
            route("/admin", &["POST", "DELETE"]),
            route("/admin", &[]),
            route("/", &["GET"]),
        ]);
        assert_eq!(r.find(&Method::POST, "/admin/x").unwrap().methods.len(), 2);
        assert_eq!(r.find(&Method::GET, "/admin/x").unwrap().methods.len(), 0);
        assert_eq!(r.find(&Method::GET, "/x").unwrap().prefix, "/");
        assert!(r.find(&Method::PUT, "/x").is_none());
    }
}
