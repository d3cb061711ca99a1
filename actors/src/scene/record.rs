//! What a scene's PostgreSQL row holds of it: the state machine's export and who asked.

use serde::{Deserialize, Serialize};
use wxlogin_storage::StoreError;

use super::state::{SceneError, SceneMachine};
use super::Origin;

#[derive(Serialize, Deserialize)]
struct Record<O> {
    machine: Vec<u8>,
    origin: O,
}

pub(crate) fn export(machine: &SceneMachine, origin: &Origin) -> Result<Vec<u8>, SceneError> {
    let record = Record {
        machine: machine.export()?,
        origin,
    };
    Ok(postcard::to_allocvec(&record).map_err(StoreError::from)?)
}

pub(crate) fn import(exported: &[u8]) -> Result<(SceneMachine, Origin), SceneError> {
    let record: Record<Origin> = postcard::from_bytes(exported).map_err(StoreError::from)?;
    Ok((SceneMachine::import(&record.machine)?, record.origin))
}
