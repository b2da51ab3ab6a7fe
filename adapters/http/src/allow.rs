//! The `Allow` header of a 405 answer (RFC 9110 §15.5.6): the methods the path does
//! support, read from the API's own description so that it cannot drift from the routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use poem::http::header::{self, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, EndpointExt, Request, Response};
use poem_openapi::registry::MetaApi;

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{id}` (or `:id`): any one non-empty segment.
    Param,
}

/// Every path template of the API with the methods it answers.
#[derive(Debug)]
pub struct AllowTable {
    routes: Vec<(Vec<Segment>, HeaderValue)>,
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with(':') || (s.starts_with('{') && s.ends_with('}')) {
                Segment::Param
            } else {
                Segment::Literal(s.to_owned())
            }
        })
        .collect()
}

impl AllowTable {
    /// From the operations of every API group. GET implies HEAD, which poem answers with
    /// the GET handler.
    #[must_use]
    pub fn new(apis: Vec<MetaApi>) -> Self {
        let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for path in apis.into_iter().flat_map(|api| api.paths) {
            let methods = routes.entry(path.path).or_default();
            for op in path.operations {
                if op.method == Method::GET {
                    methods.insert(Method::HEAD.to_string());
                }
                methods.insert(op.method.to_string());
            }
        }
        let routes = routes
            .into_iter()
            .filter_map(|(path, methods)| {
                let list = methods.into_iter().collect::<Vec<_>>().join(", ");
                HeaderValue::from_str(&list)
                    .ok()
                    .map(|value| (segments(&path), value))
            })
            .collect();
        Self { routes }
    }

    /// The `Allow` value for a request path, when it is one of the API's paths.
    fn lookup(&self, path: &str) -> Option<&HeaderValue> {
        let wanted: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template.iter().zip(&wanted).all(|(t, w)| match t {
                        Segment::Param => true,
                        Segment::Literal(l) => l == w,
                    })
            })
            .map(|(_, value)| value)
    }
}

/// Adds `Allow` to every 405 answer for one of the API's paths.
pub fn with_allow<E: Endpoint<Output = Response> + 'static>(
    ep: E,
    table: AllowTable,
) -> impl Endpoint<Output = Response> + 'static {
    let table = Arc::new(table);
    ep.around(move |ep: Arc<E>, req: Request| {
        let table = Arc::clone(&table);
        async move {
            let path = req.uri().path().to_owned();
            let mut resp = ep.call(req).await?;
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some(value) = table.lookup(&path)
            {
                resp.headers_mut().insert(header::ALLOW, value.clone());
            }
            Ok(resp)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_matches_templates_segment_by_segment() {
        let table = AllowTable {
            routes: vec![
                (
                    segments("/api/users/{id}"),
                    HeaderValue::from_static("GET, HEAD, PATCH"),
                ),
                (
                    segments("/api/users/{id}/password"),
                    HeaderValue::from_static("POST"),
                ),
                (
                    segments("/api/users"),
                    HeaderValue::from_static("GET, HEAD, POST"),
                ),
            ],
        };
        assert_eq!(table.lookup("/api/users/7").unwrap(), "GET, HEAD, PATCH");
        assert_eq!(table.lookup("/api/users/7/password").unwrap(), "POST");
        assert_eq!(table.lookup("/api/users").unwrap(), "GET, HEAD, POST");
        assert!(table.lookup("/api/users/7/other").is_none());
        assert!(table.lookup("/nope").is_none());
    }
}
