//! Counters and histograms for `/metrics`, in Prometheus' text format.
//!
//! Hand-written rather than a metrics crate: a handful of counters and one histogram need
//! a few atomics and a map, and the text format is a page of `format!`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use wxlogin_actors::{LoginMode, SceneCounters};

use crate::audit::LoginPath;

/// Upper bounds, in seconds, of the request latency buckets. Long-polls land in the top ones.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    logins: Labeled<u64>,
    binds: AtomicU64,
    unbinds: AtomicU64,
    callback_events: Labeled<u64>,
    wechat_calls: Labeled<u64>,
    token_refreshes: AtomicU64,
    request_seconds: Labeled<Histogram>,
    confirmations: Labeled<u64>,
    login_codes_rejected: AtomicU64,
    openids_throttled: AtomicU64,
    code_mode_fallbacks: AtomicU64,
    token_center_requests: Labeled<u64>,
    token_center_refused: AtomicU64,
    unionid_lookups: Labeled<u64>,
    upstream: Labeled<u64>,
}

/// Values keyed by their rendered label set, e.g. `path="scan"`.
struct Labeled<T>(Mutex<BTreeMap<String, T>>);

impl<T> Default for Labeled<T> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T: Default> Labeled<T> {
    fn update(&self, labels: String, f: impl FnOnce(&mut T)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(labels).or_default());
    }

    fn snapshot(&self) -> Vec<(String, T)>
    where
        T: Clone,
    {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[derive(Clone, Default)]
struct Histogram {
    /// Cumulative counts per bucket in [`LATENCY_BUCKETS`].
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// A login, by the path it took and the scene's mode.
    pub fn login(&self, path: LoginPath, mode: LoginMode) {
        self.logins.update(
            format!("path=\"{}\",mode=\"{}\"", path.as_str(), mode.as_str()),
            |n| *n += 1,
        );
    }

    /// A scanner answered a confirmation request: `accepted` or `denied`.
    pub fn confirmation(&self, result: &'static str) {
        self.confirmations
            .update(format!("result=\"{result}\""), |n| *n += 1);
    }

    /// A text message carried a login code that logged nothing in.
    pub fn login_code_rejected(&self) {
        self.login_codes_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// An openid sent too many wrong login codes and is ignored for a while.
    pub fn openid_throttled(&self) {
        self.openids_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// `auto` mode switched to codes after WeChat refused to make QR codes.
    pub fn code_mode_fallback(&self) {
        self.code_mode_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bind(&self) {
        self.binds.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unbind(&self) {
        self.unbinds.fetch_add(1, Ordering::Relaxed);
    }

    /// A push at the callback: its type (`scan`, `subscribe`, `unsubscribe`, `other`, `invalid`)
    /// and what came of it.
    pub fn callback_event(&self, kind: &str, outcome: &str) {
        self.callback_events
            .update(format!("type=\"{kind}\",outcome=\"{outcome}\""), |n| {
                *n += 1
            });
    }

    /// A push sent on to `WXLOGIN_UPSTREAM_URL`: `relayed` (its answer went to WeChat),
    /// `copied` (one of wxlogin's own, answer ignored), or why not: `timeout`, `failed`
    /// (5xx, a redirect, an oversized answer), `unreachable`.
    pub fn upstream(&self, outcome: &str) {
        self.upstream
            .update(format!("outcome=\"{outcome}\""), |n| *n += 1);
    }

    /// A call to WeChat's API: `errcode` is WeChat's (0 for success) or a transport failure.
    pub fn wechat_call(&self, endpoint: &str, errcode: &str) {
        self.wechat_calls.update(
            format!("endpoint=\"{endpoint}\",errcode=\"{errcode}\""),
            |n| *n += 1,
        );
    }

    /// A token-center request by a known caller (its configured name, never its key).
    pub fn token_center_request(&self, client: &str, endpoint: &'static str) {
        self.token_center_requests.update(
            format!("client=\"{}\",endpoint=\"{endpoint}\"", escape(client)),
            |n| *n += 1,
        );
    }

    /// A token-center request without a known key.
    pub fn token_center_refused(&self) {
        self.token_center_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A `user/info` lookup after a bind or scan: `stored` (a unionid), `none` (the account has
    /// no Open Platform binding, or the user does not follow) or `failed`.
    pub fn unionid_lookup(&self, outcome: &'static str) {
        self.unionid_lookups
            .update(format!("outcome=\"{outcome}\""), |n| *n += 1);
    }

    pub fn token_refreshed(&self) {
        self.token_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// One HTTP request to `route` (the matched pattern, so ids don't explode the label set).
    pub fn request(&self, route: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.request_seconds
            .update(format!("route=\"{}\"", escape(route)), |h| {
                for (bucket, bound) in h.buckets.iter_mut().zip(LATENCY_BUCKETS) {
                    *bucket += u64::from(seconds <= bound);
                }
                h.count += 1;
                h.sum += seconds;
            });
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self, scenes: &SceneCounters) -> String {
        let mut out = String::new();
        gauge(
            &mut out,
            "wxlogin_live_scenes",
            "Login QR codes waiting, scanned or logged in, not yet expired.",
            scenes.live() as u64,
        );
        counter(
            &mut out,
            "wxlogin_scenes_created_total",
            "Login QR codes created.",
            scenes.created(),
        );
        counter(
            &mut out,
            "wxlogin_scenes_expired_total",
            "Login QR codes that reached their TTL.",
            scenes.expired(),
        );
        labeled(
            &mut out,
            "wxlogin_logins_total",
            "Logins, by path (scan: already bound, or bind) and mode (qrcode or code).",
            &self.logins,
        );
        labeled(
            &mut out,
            "wxlogin_confirmations_total",
            "Answers to confirmation requests, by result: accepted or denied.",
            &self.confirmations,
        );
        counter(
            &mut out,
            "wxlogin_login_codes_rejected_total",
            "Login codes sent by text message that logged nothing in.",
            self.login_codes_rejected.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "wxlogin_openids_throttled_total",
            "Times an openid was ignored for sending too many wrong login codes.",
            self.openids_throttled.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "wxlogin_code_mode_fallback",
            "1 once WXLOGIN_LOGIN_MODE=auto has fallen back to code mode (WeChat answered 48001).",
            self.code_mode_fallbacks.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "wxlogin_binds_total",
            "Phones bound.",
            self.binds.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "wxlogin_unbinds_total",
            "Bindings removed (unfollow or admin).",
            self.unbinds.load(Ordering::Relaxed),
        );
        labeled(
            &mut out,
            "wxlogin_callback_events_total",
            "Pushes received at /wechat, by type and outcome.",
            &self.callback_events,
        );
        labeled(
            &mut out,
            "wxlogin_upstream_total",
            "Pushes sent on to WXLOGIN_UPSTREAM_URL, by outcome (relayed, copied, timeout, failed, unreachable).",
            &self.upstream,
        );
        labeled(
            &mut out,
            "wxlogin_wechat_api_calls_total",
            "Calls to WeChat's API, by endpoint and errcode.",
            &self.wechat_calls,
        );
        counter(
            &mut out,
            "wxlogin_token_refreshes_total",
            "Access tokens fetched.",
            self.token_refreshes.load(Ordering::Relaxed),
        );
        labeled(
            &mut out,
            "wxlogin_token_center_requests_total",
            "Token-center requests, by client name and endpoint.",
            &self.token_center_requests,
        );
        counter(
            &mut out,
            "wxlogin_token_center_refused_total",
            "Token-center requests refused for a missing or unknown key.",
            self.token_center_refused.load(Ordering::Relaxed),
        );
        labeled(
            &mut out,
            "wxlogin_unionid_lookups_total",
            "user/info lookups of a unionid, by outcome: stored, none or failed.",
            &self.unionid_lookups,
        );
        let name = "wxlogin_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP request latency, by route.\n# TYPE {name} histogram"
        );
        for (labels, h) in self.request_seconds.snapshot() {
            for (count, bound) in h.buckets.iter().zip(LATENCY_BUCKETS) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn labeled(out: &mut String, name: &str, help: &str, values: &Labeled<u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, value) in values.snapshot() {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Label values may not carry raw quotes, backslashes or newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::default();
        metrics.login(LoginPath::Scan, LoginMode::QrCode);
        metrics.login(LoginPath::Scan, LoginMode::QrCode);
        metrics.wechat_call("qrcode_create", "0");
        metrics.request("/api/qrcode/{scene_id}/status", Duration::from_millis(3));
        let text = metrics.render(&SceneCounters::default());
        assert!(
            text.contains("wxlogin_logins_total{path=\"scan\",mode=\"qrcode\"} 2\n"),
            "{text}"
        );
        assert!(text.contains(
            "wxlogin_wechat_api_calls_total{endpoint=\"qrcode_create\",errcode=\"0\"} 1\n"
        ));
        let route = "route=\"/api/qrcode/{scene_id}/status\"";
        assert!(text.contains(&format!(
            "wxlogin_http_request_duration_seconds_bucket{{{route},le=\"0.0025\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "wxlogin_http_request_duration_seconds_bucket{{{route},le=\"0.005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "wxlogin_http_request_duration_seconds_count{{{route}}} 1\n"
        )));
        assert!(text.contains("# TYPE wxlogin_live_scenes gauge\nwxlogin_live_scenes 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
