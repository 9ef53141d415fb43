//! Writes must come from the dashboard's own pages: a request that changes something (any
//! method but GET and HEAD) is refused when the browser says it comes from another site.
//!
//! Browsers send `Origin` with every cross-origin POST, so a foreign or opaque (`null`) one is
//! refused; without `Origin`, the origin of `Referer` is compared instead. A request with
//! neither (a non-browser client) is left to the per-form tokens, which every write checks as
//! well. The dashboard's own origin is the `Host` the browser addressed, which a page of another
//! site cannot choose for the victim's browser; the scheme is not compared, so a proxy that ends
//! TLS in front of the dashboard does not make its own pages foreign.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::WebError;

/// Refuses a write whose `Origin` (or `Referer`) is not the dashboard's own origin.
pub async fn refuse_foreign_writes(request: Request, next: Next) -> Response {
    let reads_only = request.method() == Method::GET || request.method() == Method::HEAD;
    if !reads_only && !from_own_origin(request.headers()) {
        return WebError::Page(
            StatusCode::FORBIDDEN,
            "the form did not come from this site".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether the request's stated origin, if it states one, is on the host the browser addressed.
fn from_own_origin(headers: &HeaderMap) -> bool {
    let stated = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(origin), _) => origin,
        (None, Some(referer)) => referer,
        (None, None) => return true,
    };
    let Some(stated) = stated
        .to_str()
        .ok()
        .and_then(|stated| url::Url::parse(stated).ok())
        .and_then(|stated| authority(&stated))
    else {
        return false;
    };
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(&stated))
}

/// `host[:port]` of a URL, the port only when it is not the scheme's default (as browsers
/// write `Host`).
fn authority(url: &url::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::from_own_origin;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("ci.example:8080"));
        for (name, value) in pairs {
            headers.insert(name.clone(), HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_the_dashboards_own_origin_may_write() {
        let own = headers(&[(header::ORIGIN, "http://ci.example:8080")]);
        assert!(from_own_origin(&own));
        let behind_a_proxy = headers(&[(header::ORIGIN, "https://ci.example:8080")]);
        assert!(
            from_own_origin(&behind_a_proxy),
            "the scheme is not compared"
        );
        for foreign in [
            "https://evil.example",
            "http://ci.example",
            "http://ci.example:8080.evil.example",
            "null",
        ] {
            let mut forged = own.clone();
            forged.insert(header::ORIGIN, HeaderValue::from_static(foreign));
            assert!(!from_own_origin(&forged), "{foreign}");
        }
        let referred = headers(&[(header::REFERER, "http://ci.example:8080/c/1?x=1")]);
        assert!(from_own_origin(&referred));
        let referred = headers(&[(header::REFERER, "https://evil.example/ci.example:8080")]);
        assert!(!from_own_origin(&referred));
        let unparsable = headers(&[(header::REFERER, "not a url")]);
        assert!(!from_own_origin(&unparsable));
        assert!(from_own_origin(&headers(&[])), "no browser claim");
        let mut default_port = HeaderMap::new();
        default_port.insert(header::HOST, HeaderValue::from_static("ci.example"));
        default_port.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ci.example"),
        );
        assert!(from_own_origin(&default_port));
        default_port.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://ci.example:444"),
        );
        assert!(!from_own_origin(&default_port));
        let mut no_host = headers(&[(header::ORIGIN, "http://ci.example:8080")]);
        no_host.remove(header::HOST);
        assert!(!from_own_origin(&no_host));
    }
}
