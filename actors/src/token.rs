//! The one owner of a short-lived WeChat credential (the access token, the JS-SDK ticket):
//! fetches it, caches it, refreshes it ahead of expiry, and never runs two fetches at once
//! however many callers ask. Generic over what it caches: the [`TokenSource`] says what it
//! fetches and how, the actor does the rest for every kind alike. After a failed
//! fetch it backs off: callers get that failure at once until a window has passed, the window
//! doubling with each failure in a row, so an outage or a wrong AppSecret spends a handful of
//! WeChat's 2,000 daily token calls, not one per request.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::fut::WrapFuture;
use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseFuture, SpawnHandle,
};
use tokio::sync::oneshot;

/// Refresh this long before the token runs out (WeChat tokens live 7200 s).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// After a failed background refresh, try again this soon while the old token still works.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// No fetch for this long after the first failure in a row; each further failure doubles it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two fetches while they keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// At most one token thrown away per this long on callers' reports ([`Refresh`]): 1,440 a day
/// at worst, under the token endpoint's 2,000.
pub const REPORTED_REFRESH_GAP: Duration = Duration::from_secs(60);

/// An access token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    pub fn new(value: &str) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// What a source fetched: the value and how long WeChat says it lives.
pub struct Fetched<T> {
    pub token: T,
    pub expires_in: Duration,
}

pub type FetchedToken = Fetched<AccessToken>;

/// The cached value as a caller gets it: the value and when it runs out.
#[derive(Clone, Debug)]
pub struct Held<T> {
    pub token: T,
    pub expires_at: Instant,
}

impl<T> Held<T> {
    /// How long it still lives.
    pub fn expires_in(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }
}

/// Why no token could be had; cheap to clone so one failed fetch can answer every waiter.
#[derive(Clone, Debug, thiserror::Error)]
#[error(transparent)]
pub struct TokenError(Arc<dyn std::error::Error + Send + Sync>);

impl TokenError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// The source error, for callers that know its type.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

/// A fetch under way.
pub type Fetching<T> = Pin<Box<dyn Future<Output = Result<Fetched<T>, TokenError>>>>;

/// Where tokens come from: WeChat's API in production, a fake in tests.
pub trait TokenSource: 'static {
    /// What is fetched and cached: an [`AccessToken`], a ticket.
    type Token: Clone + PartialEq + Unpin + Send + 'static;

    /// `after_rejection`: WeChat refused the last token, so a cached one must not be served again.
    fn fetch(&self, after_rejection: bool) -> Fetching<Self::Token>;

    /// The current token was refused before half its lifetime had passed, which its own
    /// expiry never causes: someone else is replacing it. Called once per actor at most.
    fn refused_early(&self, _age: Duration, _lifetime: Duration) {}
}

struct Cached<T> {
    held: Held<T>,
    fetched_at: Instant,
}

impl<T> Cached<T> {
    fn lifetime(&self) -> Duration {
        self.held
            .expires_at
            .saturating_duration_since(self.fetched_at)
    }
}

/// The last failed fetch, while it is the latest word from WeChat: callers get its error
/// until `retry_at`.
struct Failure {
    error: TokenError,
    retry_at: Instant,
    /// Failures in a row, this one included.
    in_a_row: u32,
}

impl Failure {
    fn after(previous: Option<&Failure>, error: TokenError, now: Instant) -> Self {
        let in_a_row = previous.map_or(0, |f| f.in_a_row) + 1;
        Self {
            error,
            retry_at: now + backoff(in_a_row),
            in_a_row,
        }
    }

    /// The error callers get instead of a fetch, while the window lasts.
    fn holding_back(&self, now: Instant) -> Option<TokenError> {
        let retry_in = self.retry_at.saturating_duration_since(now);
        (!retry_in.is_zero()).then(|| {
            TokenError::new(BackingOff {
                last: self.error.clone(),
                retry_in,
            })
        })
    }
}

/// [`FIRST_BACKOFF`] doubled for each failure in a row after the first, at most [`MAX_BACKOFF`].
fn backoff(failures_in_a_row: u32) -> Duration {
    let doublings = failures_in_a_row.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// A caller was answered with the last failure instead of a new fetch.
#[derive(Debug, thiserror::Error)]
#[error("{last} (no new try for {}s)", retry_in.as_secs_f64().ceil())]
pub struct BackingOff {
    pub last: TokenError,
    pub retry_in: Duration,
}

type Waiter<T> = oneshot::Sender<Result<Held<T>, TokenError>>;

pub struct TokenActor<S: TokenSource> {
    source: Rc<S>,
    current: Option<Cached<S::Token>>,
    fetching: bool,
    /// WeChat refused the current token since the last successful fetch.
    rejected: bool,
    /// Some fetch has worked since the actor started.
    fetched_once: bool,
    failure: Option<Failure>,
    waiters: Vec<Waiter<S::Token>>,
    refresh_timer: Option<SpawnHandle>,
    /// When a caller's report last threw a token away (see [`Refresh`]).
    last_reported_refresh: Option<Instant>,
    /// [`TokenSource::refused_early`] was called.
    warned_early_refusal: bool,
}

impl<S: TokenSource> TokenActor<S> {
    pub fn new(source: S) -> Self {
        Self {
            source: Rc::new(source),
            current: None,
            fetching: false,
            rejected: false,
            fetched_once: false,
            failure: None,
            waiters: Vec::new(),
            refresh_timer: None,
            last_reported_refresh: None,
            warned_early_refusal: false,
        }
    }

    fn usable(&self) -> Option<Held<S::Token>> {
        self.current
            .as_ref()
            .filter(|c| c.held.expires_at > Instant::now())
            .map(|c| c.held.clone())
    }

    fn start_fetch(&mut self, ctx: &mut Context<Self>) {
        if self.fetching {
            return;
        }
        self.fetching = true;
        let fetch = self.source.fetch(self.rejected);
        ctx.spawn(fetch.into_actor(self).map(|result, actor, ctx| {
            actor.fetching = false;
            let (next_fetch, answer) = match result {
                Ok(fetched) => {
                    actor.rejected = false;
                    actor.fetched_once = true;
                    actor.failure = None;
                    let lifetime = fetched.expires_in;
                    tracing::info!(expires_in = lifetime.as_secs(), "access token refreshed");
                    let now = Instant::now();
                    let held = Held {
                        token: fetched.token,
                        expires_at: now + lifetime,
                    };
                    actor.current = Some(Cached {
                        held: held.clone(),
                        fetched_at: now,
                    });
                    (Some(refresh_after(lifetime)), Ok(held))
                }
                Err(e) => {
                    let failure = Failure::after(actor.failure.as_ref(), e.clone(), Instant::now());
                    let window = backoff(failure.in_a_row);
                    tracing::warn!(error = %e, failures_in_a_row = failure.in_a_row, retry_in = ?window, "access token fetch failed");
                    actor.failure = Some(failure);
                    // Try again on our own, so readiness recovers without a caller: soon
                    // when nothing works without a token, unhurried while the old one lasts.
                    let retry = match actor.usable() {
                        Some(_) => window.max(RETRY_AFTER_FAILURE),
                        None => window,
                    };
                    (Some(retry), Err(e))
                }
            };
            actor.schedule_refresh(next_fetch, ctx);
            for waiter in actor.waiters.drain(..) {
                let _ = waiter.send(answer.clone());
            }
        }));
    }

    fn schedule_refresh(&mut self, after: Option<Duration>, ctx: &mut Context<Self>) {
        if let Some(timer) = self.refresh_timer.take() {
            ctx.cancel_future(timer);
        }
        self.refresh_timer =
            after.map(|after| ctx.run_later(after, |actor, ctx| actor.start_fetch(ctx)));
    }
}

/// Ahead of expiry by [`REFRESH_MARGIN`], but never before half the lifetime has passed.
fn refresh_after(expires_in: Duration) -> Duration {
    expires_in
        .saturating_sub(REFRESH_MARGIN)
        .max(expires_in / 2)
}

impl<S: TokenSource> Actor for TokenActor<S> {
    type Context = Context<Self>;
}

impl<S: TokenSource> TokenActor<S> {
    /// A usable token: the cached one, or the result of the one fetch under way.
    fn get(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Held<S::Token>, TokenError>> {
        if let Some(token) = self.usable() {
            return Box::pin(async move { Ok(token) });
        }
        if !self.fetching {
            let holding_back = self
                .failure
                .as_ref()
                .and_then(|f| f.holding_back(Instant::now()));
            if let Some(error) = holding_back {
                return Box::pin(async move { Err(error) });
            }
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        self.start_fetch(ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(TokenError::new(std::io::Error::other(
                    "token actor stopped",
                )))
            })
        })
    }

    /// Forgets `failed` if it is still the current token; returns whether it was.
    /// `refused_by_wechat`: our own call was refused, so the next fetch must not be handed the
    /// same token again (a stable token is then force-refreshed). A caller's report is not
    /// proof: it fetches afresh without forcing, which gets the token that is current now
    /// (another server's forced one included) and never invalidates it for every other server.
    fn forget(
        &mut self,
        failed: &S::Token,
        refused_by_wechat: bool,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(current) = self.current.as_ref().filter(|c| c.held.token == *failed) else {
            return false;
        };
        let (age, lifetime) = (current.fetched_at.elapsed(), current.lifetime());
        if age < lifetime / 2 && !self.warned_early_refusal {
            self.warned_early_refusal = true;
            self.source.refused_early(age, lifetime);
        }
        self.current = None;
        self.rejected |= refused_by_wechat;
        // The next caller fetches; but while fetches fail, keep trying on our own.
        let retry = self
            .failure
            .as_ref()
            .map(|f| f.retry_at.saturating_duration_since(Instant::now()));
        self.schedule_refresh(retry, ctx);
        true
    }
}

/// A usable token: the cached one, or the result of the one fetch under way.
pub struct GetToken<T = AccessToken>(PhantomData<T>);

impl<T> GetToken<T> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for GetToken<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: 'static> Message for GetToken<T> {
    type Result = Result<Held<T>, TokenError>;
}

impl<S: TokenSource> Handler<GetToken<S::Token>> for TokenActor<S> {
    type Result = ResponseFuture<Result<Held<S::Token>, TokenError>>;

    fn handle(&mut self, _: GetToken<S::Token>, ctx: &mut Self::Context) -> Self::Result {
        self.get(ctx)
    }
}

/// A caller outside wxlogin saw WeChat refuse `0`: retry-if-unchanged. If it is still the
/// current token it is thrown away and fetched again, else (someone already did) nothing is
/// fetched; either way the answer is the current token. However many callers report the same
/// token, one fetch follows. Reports that would throw away a token are honoured once per
/// [`REPORTED_REFRESH_GAP`]: a caller that reports good tokens in a loop cannot spend the
/// endpoint's daily quota.
pub struct Refresh<T>(pub T);

impl<T: 'static> Message for Refresh<T> {
    type Result = Result<Held<T>, TokenError>;
}

impl<S: TokenSource> Handler<Refresh<S::Token>> for TokenActor<S> {
    type Result = ResponseFuture<Result<Held<S::Token>, TokenError>>;

    fn handle(
        &mut self,
        Refresh(failed): Refresh<S::Token>,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        let now = Instant::now();
        let too_soon = self
            .last_reported_refresh
            .is_some_and(|last| now.duration_since(last) < REPORTED_REFRESH_GAP);
        if !too_soon && self.forget(&failed, false, ctx) {
            self.last_reported_refresh = Some(now);
        }
        self.get(ctx)
    }
}

/// Whether a token can be had, from what the actor knows: never a fetch of its own, so
/// readiness probes cost WeChat nothing. Ok with a usable token, or when the last fetch
/// worked (a refused token is replaced at the next call); else why not.
#[derive(Message)]
#[rtype(result = "Result<(), TokenError>")]
pub struct TokenHealth;

impl<S: TokenSource> Handler<TokenHealth> for TokenActor<S> {
    type Result = Result<(), TokenError>;

    fn handle(&mut self, _: TokenHealth, _: &mut Self::Context) -> Self::Result {
        if self.usable().is_some() {
            return Ok(());
        }
        match &self.failure {
            Some(failure) => Err(failure.error.clone()),
            None if self.fetched_once => Ok(()),
            None => Err(TokenError::new(std::io::Error::other(
                "no access token fetched yet",
            ))),
        }
    }
}

/// WeChat refused `0` as invalid or expired. Forget it, unless a newer token already replaced it.
pub struct InvalidateToken<T = AccessToken>(pub T);

impl<T: 'static> Message for InvalidateToken<T> {
    type Result = ();
}

impl<S: TokenSource> Handler<InvalidateToken<S::Token>> for TokenActor<S> {
    type Result = ();

    fn handle(
        &mut self,
        InvalidateToken(failed): InvalidateToken<S::Token>,
        ctx: &mut Self::Context,
    ) {
        self.forget(&failed, true, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use actix::Addr;

    use super::*;

    /// Hands out `t1`, `t2`, ... after a short delay, counting fetches.
    #[derive(Default)]
    struct Counts {
        fetches: Cell<u32>,
        /// Fetches made because WeChat refused the previous token.
        forced: Cell<u32>,
        early_refusals: Cell<u32>,
    }

    struct CountingSource {
        counts: Rc<Counts>,
        expires_in: Duration,
        fail: bool,
    }

    impl TokenSource for CountingSource {
        type Token = AccessToken;

        fn refused_early(&self, _: Duration, _: Duration) {
            let counts = &self.counts;
            counts.early_refusals.set(counts.early_refusals.get() + 1);
        }

        fn fetch(&self, after_rejection: bool) -> Fetching<AccessToken> {
            let counts = &self.counts;
            counts.fetches.set(counts.fetches.get() + 1);
            counts
                .forced
                .set(counts.forced.get() + u32::from(after_rejection));
            let (n, expires_in, fail) = (counts.fetches.get(), self.expires_in, self.fail);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if fail {
                    return Err(TokenError::new(std::io::Error::other("down")));
                }
                Ok(FetchedToken {
                    token: AccessToken::new(&format!("t{n}")),
                    expires_in,
                })
            })
        }
    }

    fn start(expires_in: Duration, fail: bool) -> (Addr<TokenActor<CountingSource>>, Rc<Counts>) {
        let counts = Rc::new(Counts::default());
        let source = CountingSource {
            counts: counts.clone(),
            expires_in,
            fail,
        };
        (TokenActor::new(source).start(), counts)
    }

    async fn get(addr: &Addr<TokenActor<CountingSource>>) -> String {
        addr.send(GetToken::new())
            .await
            .unwrap()
            .unwrap()
            .token
            .as_str()
            .to_owned()
    }

    #[actix::test]
    async fn concurrent_callers_share_one_fetch() {
        let (addr, counts) = start(Duration::from_secs(7200), false);
        let calls: Vec<_> = (0..50).map(|_| addr.send(GetToken::new())).collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().token.as_str(), "t1");
        }
        assert_eq!(get(&addr).await, "t1");
        assert_eq!(counts.fetches.get(), 1);
    }

    #[actix::test]
    async fn invalidating_the_current_token_fetches_a_new_one() {
        let (addr, counts) = start(Duration::from_secs(7200), false);
        assert_eq!(get(&addr).await, "t1");
        addr.send(InvalidateToken(AccessToken::new("t1")))
            .await
            .unwrap();
        assert_eq!(get(&addr).await, "t2");
        // A second caller that also saw t1 fail must not throw away t2.
        addr.send(InvalidateToken(AccessToken::new("t1")))
            .await
            .unwrap();
        assert_eq!(get(&addr).await, "t2");
        assert_eq!(counts.fetches.get(), 2);
        assert_eq!(
            counts.forced.get(),
            1,
            "the fetch after a rejection says so"
        );
    }

    #[actix::test]
    async fn reports_of_one_failed_token_make_one_fetch() {
        let (addr, counts) = start(Duration::from_secs(7200), false);
        assert_eq!(get(&addr).await, "t1");
        let reports: Vec<_> = (0..50)
            .map(|_| addr.send(Refresh(AccessToken::new("t1"))))
            .collect();
        for report in reports {
            assert_eq!(report.await.unwrap().unwrap().token.as_str(), "t2");
        }
        // A late report of the old token, or of one never issued, changes nothing.
        for stale in ["t1", "forged"] {
            let answer = addr.send(Refresh(AccessToken::new(stale))).await;
            assert_eq!(answer.unwrap().unwrap().token.as_str(), "t2");
        }
        assert_eq!(counts.fetches.get(), 2);
        assert_eq!(
            counts.early_refusals.get(),
            1,
            "refused within its first hour"
        );
    }

    #[actix::test]
    async fn reports_throw_away_one_token_a_minute_at_most() {
        let (addr, counts) = start(Duration::from_secs(7200), false);
        get(&addr).await;
        addr.send(Refresh(AccessToken::new("t1")))
            .await
            .unwrap()
            .unwrap();
        // Reporting the token just fetched, straight away, is not honoured.
        let answer = addr.send(Refresh(AccessToken::new("t2"))).await;
        assert_eq!(answer.unwrap().unwrap().token.as_str(), "t2");
        // wxlogin's own rejections are.
        addr.send(InvalidateToken(AccessToken::new("t2")))
            .await
            .unwrap();
        assert_eq!(get(&addr).await, "t3");
        assert_eq!(counts.fetches.get(), 3);
        assert_eq!(counts.early_refusals.get(), 1, "warned once only");
    }

    #[actix::test]
    async fn the_answer_says_how_long_the_token_lives() {
        let (addr, _) = start(Duration::from_secs(7200), false);
        let held = addr.send(GetToken::new()).await.unwrap().unwrap();
        let left = held.expires_in().as_secs();
        assert!((7100..=7200).contains(&left), "{left}");
    }

    #[actix::test]
    async fn a_token_that_lives_no_time_is_still_answered_to_its_waiters() {
        let (addr, _) = start(Duration::ZERO, false);
        assert!(addr.send(GetToken::new()).await.unwrap().is_ok());
    }

    #[actix::test]
    async fn refreshes_ahead_of_expiry() {
        let (addr, counts) = start(Duration::from_millis(400), false);
        assert_eq!(get(&addr).await, "t1");
        // Half the lifetime in, the refresh has started; the old token is still served meanwhile.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(counts.fetches.get() >= 2);
        assert_ne!(get(&addr).await, "t1");
    }

    #[actix::test]
    async fn a_failed_fetch_reaches_every_waiter_and_later_callers_until_the_window_ends() {
        let (addr, counts) = start(Duration::from_secs(7200), true);
        let (a, b) = (addr.send(GetToken::new()), addr.send(GetToken::new()));
        assert!(a.await.unwrap().is_err());
        assert!(b.await.unwrap().is_err());
        assert_eq!(counts.fetches.get(), 1);
        // Inside the first window: the failure, at once, and no fetch.
        for _ in 0..50 {
            let error = addr.send(GetToken::new()).await.unwrap().unwrap_err();
            assert!(error.inner().is::<BackingOff>(), "{error}");
        }
        assert!(addr.send(TokenHealth).await.unwrap().is_err());
        assert_eq!(counts.fetches.get(), 1);
        // When it ends the actor tries again by itself, with no caller.
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(200)).await;
        assert_eq!(counts.fetches.get(), 2);
        assert!(addr.send(TokenHealth).await.unwrap().is_err());
    }

    #[actix::test]
    async fn health_is_read_not_fetched() {
        let (addr, counts) = start(Duration::from_secs(7200), false);
        assert!(
            addr.send(TokenHealth).await.unwrap().is_err(),
            "nothing fetched yet"
        );
        assert_eq!(counts.fetches.get(), 0);
        get(&addr).await;
        assert!(addr.send(TokenHealth).await.unwrap().is_ok());
        // A refused token: still healthy, the next caller fetches a new one.
        addr.send(InvalidateToken(AccessToken::new("t1")))
            .await
            .unwrap();
        assert!(addr.send(TokenHealth).await.unwrap().is_ok());
        assert_eq!(counts.fetches.get(), 1);
    }

    #[test]
    fn the_window_doubles_from_one_second_to_a_minute() {
        let windows: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(windows, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        // Fetches at 0, 1, 3 and 7 s: four token calls in an outage's first 10 s.
        let starts: Vec<u64> = (1..=4)
            .scan(0, |t, n| {
                let start = *t;
                *t += backoff(n).as_secs();
                Some(start)
            })
            .collect();
        assert_eq!(starts, [0, 1, 3, 7]);
    }

    #[test]
    fn a_failure_holds_callers_back_only_inside_its_window() {
        let t0 = Instant::now();
        let error = || TokenError::new(std::io::Error::other("40164"));
        let first = Failure::after(None, error(), t0);
        assert_eq!(first.in_a_row, 1);
        assert!(first.holding_back(t0).is_some());
        let held = first.holding_back(t0 + Duration::from_millis(400)).unwrap();
        let backing_off = held.inner().downcast_ref::<BackingOff>().unwrap();
        assert_eq!(backing_off.retry_in, Duration::from_millis(600));
        assert!(held.to_string().contains("40164"), "{held}");
        assert!(first.holding_back(t0 + FIRST_BACKOFF).is_none());
        let second = Failure::after(Some(&first), error(), t0 + FIRST_BACKOFF);
        assert_eq!(second.in_a_row, 2);
        assert!(second
            .holding_back(t0 + Duration::from_millis(2900))
            .is_some());
        assert!(second.holding_back(t0 + Duration::from_secs(3)).is_none());
    }

    #[test]
    fn refresh_timing() {
        assert_eq!(
            refresh_after(Duration::from_secs(7200)),
            Duration::from_secs(6900)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(10)),
            Duration::from_secs(5)
        );
    }
}
