//! wxlogin's actors. They know nothing of HTTP or WeChat's wire formats:
//! - [`SceneSupervisor`] holds every live login QR code (scene) in memory, expires it at its TTL
//!   and forgets it one TTL later; a [`SceneHandle`] sends a scene its messages;
//! - a scene holds its state machine and answers long-polls on change; it can be found by its
//!   login code (code mode) and by the scanner whose confirmation it waits for;
//! - [`TokenActor`] owns the WeChat access token and fetches it through a [`TokenSource`].

mod login_code;
mod scene;
mod scene_id;
mod supervisor;
mod token;

pub use login_code::LoginCode;
pub use scene::state::{LoginMode, Phase, SceneError, SceneStatus, CODE_COOLDOWN, MAX_WRONG_CODES};
pub use scene::{
    Admitted, Answer, AnswerOutcome, Bind, BindingScanner, Bound, RequestCode, Requester, Scan,
    ScanByCode, ScanOutcome, Watch, Watched,
};
pub use scene_id::SceneId;
pub use supervisor::{
    FindScene, OpenScene, SceneCounters, SceneHandle, SceneLookup, SceneSettings, SceneSupervisor,
    ToScene,
};
pub use token::{
    AccessToken, FetchedToken, GetToken, InvalidateToken, TokenActor, TokenError, TokenHealth,
    TokenSource,
};
