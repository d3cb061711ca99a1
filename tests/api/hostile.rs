//! Whatever arrives at `/wechat`, the answer is a 4xx or `success`, never a 5xx, and the
//! service stays healthy.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;

use crate::helpers::{
    event_xml, fresh_nonce, signed_query, spawn_app_with, unix_now, wechat_signature, SANDBOX_TOKEN,
};

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// A hostile request: its query, body and content type.
struct Attack {
    query: String,
    body: Vec<u8>,
    content_type: &'static str,
}

fn signed(body: impl Into<Vec<u8>>) -> Attack {
    Attack {
        query: signed_query(SANDBOX_TOKEN),
        body: body.into(),
        content_type: "text/xml",
    }
}

/// Encrypted-mode request with a valid msg_signature over whatever `encrypt` is.
fn encrypted(encrypt: &str) -> Attack {
    let (timestamp, nonce) = (unix_now().to_string(), fresh_nonce());
    let msg_signature = wechat_signature(&[SANDBOX_TOKEN, &timestamp, &nonce, encrypt]);
    Attack {
        query: format!(
            "timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_signature}"
        ),
        body: format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").into_bytes(),
        content_type: "text/xml",
    }
}

fn attacks(rng: &mut StdRng) -> Vec<Attack> {
    let now = unix_now();
    let fixed: Vec<Attack> = vec![
        signed(format!("<xml>{}</xml>", "<a>".repeat(5000))),
        signed(format!("{}{}", "<a>".repeat(100), "</a>".repeat(100))),
        signed(format!("<xml><Content>{}</Content></xml>", "x".repeat(60_000))),
        signed(format!("<xml><Content><![CDATA[{}]]></Content></xml>", "]".repeat(60_000))),
        signed(&b"<xml><FromUserName>\xff\xfe\xfd</FromUserName></xml>"[..]),
        signed(&b"<xml><FromUserName><![CDATA[\xc3\x28]]></FromUserName></xml>"[..]),
        signed("<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><xml>&lol2;</xml>"),
        signed("<?xml version=\"1.0\"?><!DOCTYPE x SYSTEM \"http://127.0.0.1:1/x.dtd\"><xml/>"),
        signed("<xml><FromUserName>&#0;</FromUserName></xml>"),
        signed("<xml><FromUserName>&#xD800;</FromUserName></xml>"),
        signed("<xml><MsgType>event</MsgType><Event>unsubscribe</Event></xml>"),
        signed("<xml><FromUserName>o</FromUserName><MsgType>event</MsgType><Event>unsubscribe</Event><CreateTime>soon</CreateTime></xml>"),
        signed("<xml><FromUserName>bad openid!</FromUserName><MsgType>event</MsgType><Event>SCAN</Event><EventKey>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA</EventKey></xml>"),
        signed(event_xml("oHostile", now, "TEMPLATESENDJOBFINISH", "")),
        signed(event_xml("oHostile", now, "subscribe", "qrscene_")),
        signed(event_xml("oHostile", now, "SCAN", &"A".repeat(5000))),
        signed(event_xml("oHostile", now, "", "")),
        signed("<xml><MsgType>event</MsgType></xml><xml/>"),
        signed("<xml></xml> trailing text"),
        signed("<?pi?><!-- --><xml/>"),
        Attack { content_type: "application/json", ..signed("{\"xml\": true}") },
        Attack { content_type: "multipart/form-data; boundary=x", ..signed("--x\r\n\r\n--x--") },
        Attack { content_type: "text/xml; charset=gbk", ..signed(event_xml("oHostile", now, "SCAN", "x")) },
        encrypted(""),
        encrypted("!!!!"),
        encrypted(&STANDARD.encode([0u8; 15])),
        encrypted(&STANDARD.encode([0u8; 32])),
        encrypted(&STANDARD.encode(vec![0xAB; 4096])),
        Attack { query: String::new(), body: b"<xml/>".to_vec(), content_type: "text/xml" },
        Attack { query: "signature=&timestamp=&nonce=".into(), body: b"<xml/>".to_vec(), content_type: "text/xml" },
        Attack { query: "timestamp=99999999999999999999999&nonce=1&signature=x".into(), body: b"<xml/>".to_vec(), content_type: "text/xml" },
    ];
    let mut all = fixed;
    while all.len() < 200 {
        let len = rng.gen_range(0..2000);
        let mut body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Half of them start like XML, to get past the first byte.
        if rng.gen_bool(0.5) {
            body.splice(0..0, b"<xml><Encrypt>".iter().copied());
        }
        let attack = if rng.gen_bool(0.2) {
            let text: String = (0..rng.gen_range(0..400))
                .map(|_| rng.gen_range(' '..='~'))
                .collect();
            encrypted(&text)
        } else {
            signed(body)
        };
        all.push(attack);
    }
    all
}

#[tokio::test]
async fn two_hundred_hostile_bodies_cause_no_5xx() {
    // Plaintext attacks go to a plaintext server: with a key set they would all be refused
    // before the parser saw them.
    let plain = spawn_app_with(&[]).await;
    let safe = spawn_app_with(&[("WXLOGIN_AES_KEY", AES_KEY)]).await;
    let mut rng = StdRng::seed_from_u64(20261125);
    let attacks = attacks(&mut rng);
    assert!(attacks.len() >= 200);
    for (i, attack) in attacks.into_iter().enumerate() {
        let app = if attack.query.contains("encrypt_type=aes") {
            &safe
        } else {
            &plain
        };
        let response = app
            .client
            .post(app.url(&format!("/wechat?{}", attack.query)))
            .header("Content-Type", attack.content_type)
            .body(attack.body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            status.is_client_error() || (status == StatusCode::OK && body == "success"),
            "attack {i}: {status} {body}"
        );
    }
    for app in [&plain, &safe] {
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
        app.create_qr().await;
    }
}
