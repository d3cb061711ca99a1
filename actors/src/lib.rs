//! wxlogin's actors. They know nothing of HTTP or WeChat's wire formats:
//! - [`SceneSupervisor`] spawns one [`SceneActor`] per login QR code and forgets it when it ends;
//! - a [`SceneActor`] holds one scene's state machine in memory and answers long-polls on change;
//! - [`TokenActor`] owns the WeChat access token and fetches it through a [`TokenSource`].

mod scene;
mod scene_id;
mod supervisor;
mod token;

pub use scene::state::{Phase, SceneError, SceneStatus, CODE_COOLDOWN, MAX_WRONG_CODES};
pub use scene::{Bind, RequestCode, Scan, ScanOutcome, SceneActor, Watch, Watched};
pub use scene_id::SceneId;
pub use supervisor::{
    FindScene, OpenScene, SceneCounters, SceneLookup, SceneSettings, SceneSupervisor,
};
pub use token::{
    AccessToken, FetchedToken, GetToken, InvalidateToken, TokenActor, TokenError, TokenSource,
};
