//! wxlogin's actors. They know nothing of HTTP or WeChat's wire formats:
//! - [`SceneSupervisor`] spawns a [`SceneActor`] for every login QR code (scene), finds it by
//!   id, by its login code (code mode) and by the scanner whose confirmation it waits for,
//!   expires it at its TTL and remembers how it ended for one TTL more; a [`SceneHandle`] is a
//!   live scene's address;
//! - a scene actor holds its state machine in its own state and answers long-polls on change;
//! - [`TokenActor`] owns a WeChat credential (the access token, the JS-SDK ticket) and fetches
//!   it through a [`TokenSource`].

mod login_code;
mod pool;
mod scene;
mod scene_id;
mod supervisor;
mod token;
mod wall_clock;

pub use login_code::LoginCode;
pub use scene::state::{
    CodeDigest, LoginMode, Phase, SceneError, SceneStatus, CODE_COOLDOWN, MAX_WRONG_CODES,
};
pub use scene::{
    Admitted, Answer, AnswerOutcome, Bind, BindingScanner, Bound, Origin, RequestCode, Requester,
    Scan, ScanByCode, ScanOnDevice, ScanOutcome, SceneActor, ToScene, Watch, Watched,
};
pub use scene_id::{SceneId, SceneKey};
pub use supervisor::{
    FindScene, OpenScene, SceneCounters, SceneHandle, SceneLookup, SceneSettings, SceneSupervisor,
};
pub use token::{
    AccessToken, Fetched, FetchedToken, Fetching, GetToken, Held, InvalidateToken, Refresh,
    TokenActor, TokenError, TokenHealth, TokenSource, REPORTED_REFRESH_GAP,
};
