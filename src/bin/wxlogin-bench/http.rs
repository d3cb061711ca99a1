//! A lean HTTP/1.1 keep-alive client (one hyper connection per simulated browser) and the
//! loop that drives many of them at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One request, ready to send.
#[derive(Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
    pub content_type: &'static str,
    /// An `Authorization: Bearer` token, for the admin API.
    pub bearer: Option<String>,
}

/// A well-formed `wxlogin_browser` key (43 base64url characters).
const BROWSER_COOKIE: &str = "wxlogin_browser=wxlogin-bench-browser-key-0123456789abcdefg";

impl Req {
    pub fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            body: Bytes::new(),
            content_type: "text/plain",
            bearer: None,
        }
    }

    pub fn post(path: String, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        Self {
            method: Method::POST,
            path,
            body: body.into(),
            content_type,
            bearer: None,
        }
    }

    pub fn json(path: String, body: serde_json::Value) -> Self {
        Self::post(path, body.to_string(), "application/json")
    }

    pub fn with_bearer(self, token: &str) -> Self {
        Self {
            bearer: Some(token.to_owned()),
            ..self
        }
    }
}

/// One keep-alive connection to the server; reopened if the server closed it while idle
/// (actix-web closes connections idle for 5 s).
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    host: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            addr,
            host: addr.to_string(),
        })
    }

    pub async fn send(&mut self, req: &Req) -> Result<(StatusCode, Bytes), Error> {
        if self.sender.is_closed() {
            *self = Self::open(self.addr).await?;
        }
        self.sender.ready().await?;
        let mut request = Request::builder()
            .method(req.method.clone())
            .uri(req.path.as_str())
            .header(HOST, self.host.as_str())
            .header(CONTENT_TYPE, req.content_type)
            // One browser for every connection: the scenes it creates answer it (the service
            // hands a scene's token only to the browser that created it).
            .header(COOKIE, BROWSER_COOKIE);
        if let Some(token) = &req.bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(req.body.clone()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends and insists on HTTP 200; returns the body.
    pub async fn ok(&mut self, req: &Req) -> Result<Bytes, Error> {
        match self.send(req).await? {
            (StatusCode::OK, body) => Ok(body),
            (status, body) => Err(format!(
                "{} {} answered {status}: {}",
                req.method,
                req.path,
                String::from_utf8_lossy(&body)
            )
            .into()),
        }
    }

    pub async fn ok_json(&mut self, req: &Req) -> Result<serde_json::Value, Error> {
        Ok(serde_json::from_slice(&self.ok(req).await?)?)
    }
}

/// Opens `n` connections, a few at a time so the listen backlog never overflows.
pub async fn open_many(addr: SocketAddr, n: usize) -> Result<Vec<Conn>, Error> {
    const AT_ONCE: usize = 256;
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = AT_ONCE.min(n - conns.len());
        let opened = join_all((0..batch).map(|_| Conn::open(addr))).await;
        for conn in opened {
            conns.push(conn?);
        }
    }
    Ok(conns)
}

/// Runs futures concurrently on the current task's runtime and collects their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("a load task panicked"));
    }
    outputs
}

/// Whether an answer counts as a success, and if not why.
pub type Check = fn(StatusCode, &[u8]) -> Result<(), String>;

/// How long a [`drive`] goes on.
#[derive(Clone, Copy)]
pub enum Until {
    /// Cycle through the requests until this much time has passed.
    Elapsed(Duration),
    /// Send each request once.
    Exhausted,
}

/// What a [`drive`] did.
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub first_failure: Option<String>,
}

impl Outcome {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Every connection sends requests back to back, taking the next one from `reqs`;
/// `check` says whether an answer counts as a success.
pub async fn drive(
    conns: Vec<Conn>,
    reqs: Arc<Vec<Req>>,
    until: Until,
    check: Check,
) -> (Outcome, Vec<Conn>) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers = conns.into_iter().map(|mut conn| {
        let (reqs, next) = (reqs.clone(), next.clone());
        async move {
            let (mut ok, mut failed, mut first_failure) = (0u64, 0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let req = match until {
                    Until::Elapsed(limit) if start.elapsed() >= limit => break,
                    Until::Elapsed(_) => &reqs[i % reqs.len()],
                    Until::Exhausted if i >= reqs.len() => break,
                    Until::Exhausted => &reqs[i],
                };
                let verdict = match conn.send(req).await {
                    Ok((status, body)) => check(status, &body),
                    Err(e) => Err(e.to_string()),
                };
                match verdict {
                    Ok(()) => ok += 1,
                    Err(why) => {
                        failed += 1;
                        first_failure.get_or_insert(format!("{}: {why}", req.path));
                    }
                }
            }
            (ok, failed, first_failure, conn)
        }
    });
    let results = join_all(workers).await;
    let elapsed = start.elapsed();
    let mut outcome = Outcome {
        ok: 0,
        failed: 0,
        elapsed,
        first_failure: None,
    };
    let mut conns = Vec::with_capacity(results.len());
    for (ok, failed, first_failure, conn) in results {
        outcome.ok += ok;
        outcome.failed += failed;
        if outcome.first_failure.is_none() {
            outcome.first_failure = first_failure;
        }
        conns.push(conn);
    }
    (outcome, conns)
}

/// Any HTTP 200.
pub fn status_ok(status: StatusCode, _: &[u8]) -> Result<(), String> {
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}
