//! `GET /api/qrcode/{scene_id}/events`: a scene's status as a server-sent event stream.
//!
//! The current status at once, then one event per change, each the same JSON as the long-poll's
//! answer; a `:` comment every 15 s keeps proxies from closing an idle stream. The stream ends
//! after `logged_in` (the browser has what it came for) or any terminal state, when the browser
//! goes away, and when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant};
use wxlogin_actors::{SceneHandle, SceneLookup, Watch};

use super::head::is_head;
use super::qrcode::{ended, find, lookup, Owned, StatusBody};
use super::scene_owner::SceneSecret;
use super::AppState;
use crate::error::{ApiError, ErrorBody};

const HEARTBEAT: Duration = Duration::from_secs(15);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/qrcode/{scene_id}/events", web::get().to(events));
}

/// The scene's status as server-sent events: `data:` the status JSON, at once and on each change.
#[utoipa::path(
    get,
    path = "/api/qrcode/{scene_id}/events",
    tag = "login",
    params(("scene_id" = String, Path, description = "The scene_id POST /api/qrcode answered")),
    security(("scene_secret" = []), ("browser_cookie" = [])),
    responses(
        (status = 200, description = "The stream; each event's data is a status (see the status route)", content_type = "text/event-stream", body = String),
        (status = 403, description = "`not_scene_owner`", body = ErrorBody),
        (status = 404, description = "`scene_not_found`", body = ErrorBody),
    ),
)]
pub(super) async fn events(
    state: web::Data<AppState>,
    scene_id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (scene, secret) = match lookup(&state, &scene_id, &request).await? {
        // A HEAD's answer has no body: its stream ends at once.
        Owned::Live(..) if is_head(&request) => {
            return Ok(stream_response()
                .streaming(futures_util::stream::empty::<Result<Bytes, Infallible>>()))
        }
        Owned::Live(scene, secret) => (scene, secret),
        Owned::Ended(last) => return Ok(stream_response().body(event(&StatusBody::from(last)))),
        Owned::Unknown => return Err(ApiError::SceneNotFound),
    };
    let (tx, mut rx) = mpsc::channel(4);
    actix_web::rt::spawn(forward(state, scene_id.into_inner(), scene, secret, tx));
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|next| next.map(Ok::<_, Infallible>))
    });
    Ok(stream_response().streaming(body))
}

fn stream_response() -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        // The stream carries the session token.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // nginx would otherwise buffer the stream and deliver events late.
        .insert_header(("X-Accel-Buffering", "no"));
    response
}

fn event(body: &StatusBody) -> Bytes {
    let json = serde_json::to_string(body).expect("a status serializes");
    Bytes::from(format!("data: {json}\n\n"))
}

/// Sends the scene's status into `tx` now and on every change, until the stream ends; the
/// stream's request proved `secret`.
async fn forward(
    state: web::Data<AppState>,
    scene_id: String,
    scene: SceneHandle,
    secret: SceneSecret,
    tx: mpsc::Sender<Bytes>,
) {
    let mut shutting_down: watch::Receiver<bool> = state.shutting_down.clone();
    let mut heartbeat = interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut scene = Some(scene);
    loop {
        // Watching anew after each change reads the state as it is, so no change is missed.
        // The scene is found afresh each time: a waiting stream never holds its address.
        let scene = match scene.take() {
            Some(scene) => scene,
            None => match find(&state, &scene_id).await {
                Ok(SceneLookup::Live(scene)) => scene,
                Ok(SceneLookup::Ended(last)) => {
                    let _ = tx.send(event(&StatusBody::from(last))).await;
                    return;
                }
                Ok(SceneLookup::Unknown) | Err(_) => return,
            },
        };
        let Ok(watched) = scene.send(Watch { until_change: true }).await else {
            // It ended meanwhile: say how.
            if let Ok(last) = ended(&state, &scene_id).await {
                let _ = tx.send(event(&last)).await;
            }
            return;
        };
        let phase = watched.status.phase;
        if tx
            .send(event(&StatusBody::of(watched.status, &secret)))
            .await
            .is_err()
            // After a settled state only the TTL can change anything.
            || phase.is_settled()
        {
            return;
        }
        let Some(mut change) = watched.change else {
            return;
        };
        loop {
            tokio::select! {
                _ = &mut change => break,
                _ = heartbeat.tick() => {
                    if tx.send(Bytes::from_static(b": heartbeat\n\n")).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
                _ = shutting_down.wait_for(|&down| down) => return,
            }
        }
    }
}
