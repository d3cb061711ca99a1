//! The service's flows as a browser and WeChat drive them: scenes, signed scan events,
//! SMS codes; plus a helper that spreads such preparation over many connections.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use wxlogin::wechat::crypto::MessageCrypto;
use wxlogin::wechat::envelope::random_nonce;
use wxlogin::wechat::message::Message;
use wxlogin::wechat::scene_key::DEFAULT_PREFIX;
use wxlogin::wechat::signature::sign;

use crate::http::{join_all, Conn, Error, Req};
use crate::server::{AES_KEY, SANDBOX_APPID, SANDBOX_TOKEN};

/// A live scene as `POST /api/qrcode` made it.
#[derive(Clone)]
pub struct Scene {
    pub id: String,
}

pub async fn create_scene(conn: &mut Conn) -> Result<Scene, Error> {
    let body = conn
        .ok_json(&Req::post("/api/qrcode".into(), "", "text/plain"))
        .await?;
    let id = body["scene_id"].as_str().ok_or("no scene_id")?.to_owned();
    Ok(Scene { id })
}

pub fn status_path(scene: &Scene, wait: u64) -> String {
    format!("/api/qrcode/{}/status?wait={wait}", scene.id)
}

/// The state a status answer reports.
pub fn state_of(body: &[u8]) -> Result<String, Error> {
    let body: serde_json::Value = serde_json::from_slice(body)?;
    Ok(body["state"].as_str().ok_or("no state")?.to_owned())
}

/// How a push is delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Safe,
}

/// Signs (and in safe mode encrypts) WeChat events exactly as the sandbox's WeChat does.
pub struct Wechat {
    crypto: MessageCrypto,
}

impl Wechat {
    pub fn sandbox() -> Self {
        Self {
            crypto: MessageCrypto::new(AES_KEY, SANDBOX_APPID).expect("a valid key"),
        }
    }

    /// `openid`, an existing follower, scans `scene`'s QR code.
    pub fn scan(&self, scene: &Scene, openid: &str, mode: Mode) -> Req {
        let now = unix_now().to_string();
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SCAN]]></Event>\
             <EventKey><![CDATA[{DEFAULT_PREFIX}{}]]></EventKey><Ticket><![CDATA[bench]]></Ticket></xml>",
            scene.id
        );
        // Unique in this run: two pushes in one second with one random nonce share a signature,
        // and the second is refused as a replay (403), at this tool's rates once in a while.
        static SENT: AtomicU64 = AtomicU64::new(0);
        let nonce = format!("{}{}", random_nonce(), SENT.fetch_add(1, Ordering::Relaxed));
        let signature = sign(&[SANDBOX_TOKEN, &now, &nonce]);
        let query = format!("signature={signature}&timestamp={now}&nonce={nonce}&openid={openid}");
        match mode {
            Mode::Plain => Req::post(format!("/wechat?{query}"), xml, "text/xml"),
            Mode::Safe => {
                let encrypt = self.crypto.encrypt(xml.as_bytes());
                let msg_signature = sign(&[SANDBOX_TOKEN, &now, &nonce, &encrypt]);
                let body = format!(
                    "<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
                );
                Req::post(
                    format!("/wechat?{query}&encrypt_type=aes&msg_signature={msg_signature}"),
                    body,
                    "text/xml",
                )
            }
        }
    }
}

/// A plaintext passive reply with text for the user: the callback acted on the scan.
pub fn plain_reply(status: hyper::StatusCode, body: &[u8]) -> Result<(), String> {
    crate::http::status_ok(status, body)?;
    match Message::parse(body) {
        Ok(reply) if !reply.content.is_empty() => Ok(()),
        _ => Err(format!("no text reply: {}", String::from_utf8_lossy(body))),
    }
}

/// An encrypted passive reply.
pub fn safe_reply(status: hyper::StatusCode, body: &[u8]) -> Result<(), String> {
    crate::http::status_ok(status, body)?;
    match Message::parse(body) {
        Ok(reply) if !reply.encrypt.is_empty() => Ok(()),
        _ => Err(format!(
            "no encrypted reply: {}",
            String::from_utf8_lossy(body)
        )),
    }
}

/// A scene whose scanner has a code on the way to `phone`: one `bind` call from logged in.
pub struct PendingBind {
    pub scene: Scene,
    pub phone: String,
    pub code: String,
}

impl PendingBind {
    pub async fn prepare(conn: &mut Conn, wechat: &Wechat, n: usize) -> Result<Self, Error> {
        let scene = create_scene(conn).await?;
        let openid = format!("obench_bind_{n}");
        conn.ok(&wechat.scan(&scene, &openid, Mode::Plain)).await?;
        let phone = format!("139{n:08}");
        let sms = Req::json(
            format!("/api/qrcode/{}/sms", scene.id),
            json!({ "phone": phone }),
        );
        let (status, body) = conn.send(&sms).await?;
        if status != hyper::StatusCode::ACCEPTED {
            return Err(format!("sms: {status} {}", String::from_utf8_lossy(&body)).into());
        }
        let sent = conn
            .ok_json(&Req::get(format!("/sandbox/sms/{phone}")))
            .await?;
        let code = sent["code"].as_str().ok_or("no code")?.to_owned();
        Ok(Self { scene, phone, code })
    }

    pub fn bind(&self) -> Req {
        Req::json(
            format!("/api/qrcode/{}/bind", self.scene.id),
            json!({"phone": self.phone, "code": self.code}),
        )
    }
}

/// Runs `job(conn, i)` for i in 0..count over all `conns` at once; returns the results in
/// order and the connections for reuse.
pub async fn prepare<T, F, Fut>(
    conns: Vec<Conn>,
    count: usize,
    job: F,
) -> Result<(Vec<T>, Vec<Conn>), Error>
where
    T: Send + 'static,
    F: Fn(Conn, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (Conn, Result<T, Error>)> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers = conns.into_iter().map(|mut conn| {
        let (next, job) = (next.clone(), job.clone());
        async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return (conn, Ok(done));
                }
                let (back, result) = job(conn, i).await;
                conn = back;
                match result {
                    Ok(value) => done.push((i, value)),
                    Err(e) => return (conn, Err(e)),
                }
            }
        }
    });
    let mut conns = Vec::new();
    let mut all = Vec::with_capacity(count);
    for (conn, result) in join_all(workers).await {
        conns.push(conn);
        all.extend(result?);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok((all.into_iter().map(|(_, value)| value).collect(), conns))
}

/// `count` new scenes.
pub async fn create_scenes(
    conns: Vec<Conn>,
    count: usize,
) -> Result<(Vec<Scene>, Vec<Conn>), Error> {
    prepare(conns, count, |mut conn, _| async move {
        let scene = create_scene(&mut conn).await;
        (conn, scene)
    })
    .await
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
