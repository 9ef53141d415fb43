//! Writes must come from the dashboard's own pages: a request that changes something (any
//! method but GET and HEAD) is refused when the browser says it comes from another origin.
//!
//! Browsers send `Origin` with every cross-origin POST, so a foreign or opaque (`null`) one is
//! refused; without `Origin`, the origin of `Referer` is compared instead. A request with
//! neither (a non-browser client) is left to the per-form tokens, which every write checks as
//! well. The dashboard's own origin is the scheme it is served with and the `Host` the browser
//! addressed, which a page of another site cannot choose for the victim's browser.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Web;
use super::error::WebError;

/// Refuses a write whose `Origin` (or `Referer`) is not the dashboard's own origin.
pub async fn refuse_foreign_writes(
    State(web): State<Web>,
    request: Request,
    next: Next,
) -> Response {
    let reads_only = request.method() == Method::GET || request.method() == Method::HEAD;
    if !reads_only && !from_own_origin(request.headers(), web.secure_cookies) {
        return WebError::Page(
            StatusCode::FORBIDDEN,
            "the form did not come from this site".into(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether the request's stated origin, if it states one, is the dashboard's own.
fn from_own_origin(headers: &HeaderMap, tls: bool) -> bool {
    let stated = match headers.get(header::ORIGIN) {
        Some(origin) => origin.to_str().ok().map(str::to_owned),
        None => match headers.get(header::REFERER) {
            Some(referer) => referer
                .to_str()
                .ok()
                .and_then(|referer| url::Url::parse(referer).ok())
                .map(|referer| referer.origin().ascii_serialization()),
            None => return true,
        },
    };
    let Some(stated) = stated else {
        return false;
    };
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
    else {
        return false;
    };
    let scheme = if tls { "https" } else { "http" };
    stated.eq_ignore_ascii_case(&format!("{scheme}://{host}"))
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
        assert!(from_own_origin(&own, false));
        assert!(!from_own_origin(&own, true), "the scheme is part of it");
        for foreign in [
            "https://evil.example",
            "http://ci.example",
            "http://ci.example:8080.evil.example",
            "null",
        ] {
            let mut forged = own.clone();
            forged.insert(header::ORIGIN, HeaderValue::from_static(foreign));
            assert!(!from_own_origin(&forged, false), "{foreign}");
        }
        let referred = headers(&[(header::REFERER, "http://ci.example:8080/c/1?x=1")]);
        assert!(from_own_origin(&referred, false));
        let referred = headers(&[(header::REFERER, "https://evil.example/ci.example:8080")]);
        assert!(!from_own_origin(&referred, false));
        let unparsable = headers(&[(header::REFERER, "not a url")]);
        assert!(!from_own_origin(&unparsable, false));
        assert!(from_own_origin(&headers(&[]), false), "no browser claim");
    }
}
