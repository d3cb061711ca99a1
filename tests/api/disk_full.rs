//! A data directory that fills up: writes answer a JSON 503 `storage_unavailable`, reads,
//! status and `/healthz` go on, `/readyz` says not ready, and once space is back writes work
//! again without a restart; nothing acknowledged is lost. The disk is a small tmpfs (root
//! only: mounting needs it); tmpfs ignores fsync, which this test does not need.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::{assert_error, spawn_app_on, TestApp};

const ADMIN: &str = "admin-secret-for-the-disk-full-test";

/// A size-limited tmpfs, unmounted on drop.
struct SmallDisk {
    mount: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let mount = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mount.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Self { mount },
            outcome => panic!("cannot mount a tmpfs (it needs root): {outcome:?}"),
        }
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    /// Fills what is left of the disk; returns the file holding the space.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = File::create(&path).unwrap();
        let block = vec![7u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        // What a 64 KiB block did not fit in.
        while file.write_all(&[7]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// One login, as far as it gets: scan, SMS code, bind. The bind's answer.
async fn try_sign_up(app: &TestApp, openid: &str, phone: &str) -> reqwest::Response {
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, openid, true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let code = app.sms_code(phone).await;
    app.bind(&qr.scene_id, phone, &code).await
}

async fn logout(app: &TestApp, token: &str) -> reqwest::Response {
    let url = app.url("/api/logout");
    app.client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn bound_phone(app: &TestApp, openid: &str) -> Option<String> {
    let url = app.url(&format!("/admin/bindings?openid={openid}"));
    let response = app.client.get(url).bearer_auth(ADMIN).send().await.unwrap();
    if response.status() == StatusCode::NOT_FOUND {
        return None;
    }
    let body: Value = response.json().await.unwrap();
    Some(body["phone"].as_str().unwrap().to_owned())
}

/// Every acknowledged bind still stands, and its session token logs in.
async fn assert_all_there(app: &TestApp, acknowledged: &[(String, String, String)]) {
    for (openid, phone, token) in acknowledged {
        assert_eq!(
            bound_phone(app, openid).await.as_ref(),
            Some(phone),
            "{openid}"
        );
        assert_eq!(app.me(token).await.status(), StatusCode::OK, "{openid}");
    }
}

#[tokio::test]
#[cfg_attr(not(has_root), ignore = "needs root (CI runs the tests as root)")]
async fn a_full_disk_refuses_writes_then_recovers_without_a_restart() {
    let disk = SmallDisk::mount("16m");
    let data = Arc::new(tempfile::tempdir_in(disk.path()).unwrap());
    let env = [("WXLOGIN_ADMIN_TOKEN", ADMIN)];
    let mut app = spawn_app_on(data.clone(), &env).await;
    app.wait_until_ready().await;

    let mut acknowledged = Vec::new();
    for i in 0..3 {
        let (openid, phone) = (format!("oBefore{i}"), format!("1380000000{i}"));
        let token = app.sign_up(&openid, &phone).await;
        acknowledged.push((openid, phone, token));
    }

    let filler = disk.fill();
    // sled's log may still have room in a page it holds: the disk shows within a few writes.
    let mut refused = false;
    for i in 0..200 {
        let (openid, phone) = (format!("oDuring{i}"), format!("139{i:08}"));
        let response = try_sign_up(&app, &openid, &phone).await;
        if response.status() == StatusCode::OK {
            let body: Value = response.json().await.unwrap();
            let token = body["token"].as_str().unwrap().to_owned();
            acknowledged.push((openid, phone, token));
            continue;
        }
        refused = true;
        assert_error(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
        )
        .await;
        break;
    }
    // (The refused bind was not acknowledged: it may or may not be there after.)
    assert!(refused, "a bind on a full disk is refused");

    // Writes are refused, as JSON 503s, the WeChat callback's too.
    let first_token = &acknowledged[0].2.clone();
    assert_error(
        logout(&app, first_token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    let pushed = app.unsubscribe(&acknowledged[1].0, None).await;
    assert_eq!(pushed["status"], 503, "{pushed}");
    // Reads, status and liveness go on; readiness says no.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_error(
        app.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;
    assert_all_there(&app, &acknowledged).await;
    let qr = app.create_qr().await;
    assert_eq!(app.status(&qr.scene_id, 0).await.0, StatusCode::OK);

    std::fs::remove_file(filler).unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if app.get("/readyz").await.status() == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again within 10 s of space coming back");

    // Writes work again, in the same process.
    let token = app.sign_up("oAfter", "13700000000").await;
    let (openid, phone) = ("oAfter".to_owned(), "13700000000".to_owned());
    assert_eq!(
        logout(&app, first_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.me(first_token).await.status(), StatusCode::UNAUTHORIZED);
    acknowledged.push((openid, phone, token));
    let still = &acknowledged[1..];
    assert_all_there(&app, still).await;
    assert!(!app.log().contains("panicked"), "{}", app.log());

    // And all of it is on disk: a clean stop, a restart, the same answers.
    assert!(app.terminate().await.success(), "{}", app.log());
    let app = spawn_app_on(data, &env).await;
    app.wait_until_ready().await;
    assert_all_there(&app, still).await;
    assert_eq!(app.me(first_token).await.status(), StatusCode::UNAUTHORIZED);
}
