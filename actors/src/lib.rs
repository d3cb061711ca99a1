//! wxlogin's actors. They know nothing of HTTP or WeChat's wire formats:
//! - [`SceneSupervisor`] holds every live login QR code (scene) in memory, expires it at its TTL
//!   and forgets it one TTL later; a [`SceneHandle`] sends a scene its messages;
//! - a scene holds its state machine and answers long-polls on change;
//! - [`TokenActor`] owns the WeChat access token and fetches it through a [`TokenSource`].

mod scene;
mod scene_id;
mod supervisor;
mod token;

pub use scene::state::{Phase, SceneError, SceneStatus, CODE_COOLDOWN, MAX_WRONG_CODES};
pub use scene::{Bind, RequestCode, Scan, ScanOutcome, Watch, Watched};
pub use scene_id::SceneId;
pub use supervisor::{
    FindScene, OpenScene, SceneCounters, SceneHandle, SceneLookup, SceneSettings, SceneSupervisor,
    ToScene,
};
pub use token::{
    AccessToken, FetchedToken, GetToken, InvalidateToken, TokenActor, TokenError, TokenSource,
};
