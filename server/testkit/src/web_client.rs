//! A browser's side of the web dashboard over real HTTP/1.1, for tests: requests with a session
//! cookie or extra headers, urlencoded forms, the sign-in dance (page, pre-session cookie and
//! token, then the form from the dashboard's own origin).

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An HTTP/1.1 answer.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// Every value of a header, in order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
            .collect()
    }

    /// The session cookie a sign-in set.
    pub fn session(&self) -> String {
        self.headers("set-cookie")
            .into_iter()
            .find_map(|cookie| cookie.split(';').next()?.strip_prefix("cygnet_session="))
            .expect("the session cookie")
            .to_owned()
    }
}

/// A browser-like request over `stream`; `form` is sent urlencoded.
pub async fn exchange(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
    session: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let cookie = session.map(|session| format!("theme=dark; cygnet_session={session}"));
    let headers: Vec<(&str, &str)> = cookie
        .as_deref()
        .map(|cookie| vec![("cookie", cookie)])
        .unwrap_or_default();
    exchange_with(stream, method, path, &headers, form).await
}

/// A request with the given extra headers (cookies, `origin`, `referer`).
pub async fn exchange_with(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let body = form
        .map(|fields| {
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish()
        })
        .unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: cygnet\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if form.is_some() {
        request.push_str(&format!(
            "content-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    // A TLS peer may close without close_notify; what arrived is the answer.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

pub async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    session: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    exchange(stream, method, path, session, form).await
}

/// A request over a new connection with the given extra headers.
pub async fn http_with(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    exchange_with(stream, method, path, headers, form).await
}

/// A value of the page's hidden input `name`.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).expect("the hidden input") + marker.len();
    page[start..].split('"').next().expect("value").to_owned()
}

/// The sign-in page's pre-session: its cookie (`name=value`) and the form's token.
pub fn pre_session(page: &Reply) -> (String, String) {
    let cookie = page
        .headers("set-cookie")
        .into_iter()
        .find(|cookie| cookie.starts_with("cygnet_signin="))
        .expect("the pre-session cookie");
    let pair = cookie.split(';').next().expect("pair").to_owned();
    (pair, hidden(&page.body, "signin_token"))
}

/// Posts the sign-in form the way a browser does: the sign-in page first, then the form with
/// the page's token and cookie, from the dashboard's own origin.
pub async fn post_sign_in<S, F>(connect: impl Fn() -> F, token: &str) -> Reply
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: std::future::Future<Output = S>,
{
    let page = exchange(connect().await, "GET", "/signin", None, None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let (cookie, signin_token) = pre_session(&page);
    exchange_with(
        connect().await,
        "POST",
        "/signin",
        &[("cookie", &cookie), ("origin", "http://cygnet")],
        Some(&[("token", token), ("signin_token", &signin_token)]),
    )
    .await
}

/// Signs in over plain HTTP; the answer to the form.
pub async fn post_sign_in_plain(web: SocketAddr, token: &str) -> Reply {
    post_sign_in(
        || async move { tokio::net::TcpStream::connect(web).await.expect("connect") },
        token,
    )
    .await
}

/// The CSRF token the page's forms carry.
pub fn csrf(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a CSRF token") + marker.len();
    page[start..].split('"').next().expect("value").to_owned()
}

/// Signs in over plain HTTP; the session cookie's value.
pub async fn sign_in(web: SocketAddr, token: &str) -> String {
    let signed_in = post_sign_in_plain(web, token).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    signed_in.session()
}

/// A POST of `body` as it is (a webhook delivery) with the given headers.
pub async fn post_body(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: cygnet\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // A server may answer (413) before reading all of a large body and close.
    let _ = stream.write_all(&bytes).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
