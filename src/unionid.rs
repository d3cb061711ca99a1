//! Users' unionids, fetched from WeChat (`cgi-bin/user/info`) after a bind, and after a scan of
//! a binding that has none yet: always off the request path, bounded in time and in number, so
//! a slow or failing WeChat never holds up or fails a login; the next scan tries again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wxlogin_storage::{Binding, OpenId, Store, UnionId};

use crate::metrics::Metrics;
use crate::wechat::api::WechatClient;

/// Lookups under way at most; beyond, a lookup is skipped (the next scan asks again).
const MAX_IN_FLIGHT: usize = 32;
/// The longest a lookup may take, retries and a token refresh included.
const LOOKUP_BUDGET: Duration = Duration::from_secs(30);
/// The longest an OpenID Connect authorization waits for a unionid it needs.
const AUTHORIZE_BUDGET: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct UnionIds {
    wechat: WechatClient,
    store: Store,
    metrics: Arc<Metrics>,
    /// Users whose lookup is under way: one at a time per user.
    in_flight: Arc<Mutex<HashSet<OpenId>>>,
}

impl UnionIds {
    pub fn new(wechat: WechatClient, store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            wechat,
            store,
            metrics,
            in_flight: Arc::default(),
        }
    }

    /// After a scan by `openid`: looks their unionid up in the background if their binding
    /// has none.
    pub fn after_scan(&self, openid: &OpenId) {
        let (this, openid) = (self.clone(), openid.clone());
        actix_web::rt::spawn(async move {
            match this.store.binding(&openid).await {
                Ok(Some(binding)) => this.look_up_later(binding),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "reading a binding for its unionid failed"),
            }
        });
    }

    /// Looks up the unionid of `binding`'s user in the background, unless it has one.
    pub fn look_up_later(&self, binding: Binding) {
        if binding.unionid.is_some() {
            return;
        }
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if in_flight.len() >= MAX_IN_FLIGHT || !in_flight.insert(binding.openid.clone()) {
                return;
            }
        }
        let this = self.clone();
        actix_web::rt::spawn(async move {
            let outcome = this.look_up(&binding).await;
            this.metrics.unionid_lookup(outcome);
            let mut in_flight = this.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.remove(&binding.openid);
        });
    }

    /// The unionid of `binding`'s user, looked up now if it has none (within a few seconds):
    /// an authorization that derives subjects from unionids needs it before it can answer,
    /// and the background lookup after a bind may not be done yet.
    pub async fn now(&self, binding: &Binding) -> Option<UnionId> {
        if let Some(unionid) = &binding.unionid {
            return Some(unionid.clone());
        }
        let found = tokio::time::timeout(AUTHORIZE_BUDGET, self.wechat.unionid(&binding.openid));
        let unionid = found.await.ok()?.ok()??;
        if let Err(e) = self.store.set_unionid(binding, &unionid).await {
            tracing::warn!(error = %e, "storing a unionid failed; the next scan tries again");
        }
        Some(unionid)
    }

    /// The outcome label: `stored`, `none` or `failed`.
    async fn look_up(&self, binding: &Binding) -> &'static str {
        let openid = &binding.openid;
        let found = tokio::time::timeout(LOOKUP_BUDGET, self.wechat.unionid(openid)).await;
        let failure = match found {
            Ok(Ok(Some(unionid))) => match self.store.set_unionid(binding, &unionid).await {
                Ok(_) => return "stored",
                Err(e) => e.to_string(),
            },
            Ok(Ok(None)) => return "none",
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer in {}s", LOOKUP_BUDGET.as_secs()),
        };
        tracing::warn!(user = %crate::audit::Short(openid), error = failure, "unionid lookup failed; the next scan tries again");
        "failed"
    }
}
