//! The data directory remembers that it served a real account: from the first real-mode start on,
//! `DATA_DIR/mode` says `real`, and the sandbox refuses such a directory. Its bindings are real
//! users, and in the sandbox `/sandbox/scan` logs anyone in as any of them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const FILE: &str = "mode";
const REAL: &[u8] = b"real\n";

#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error("WXLOGIN_DATA_DIR: {} served a real account ({} says so) and the sandbox, where anyone can log in as any user, refuses it: set WXLOGIN_APPID for real mode, or give the sandbox another WXLOGIN_DATA_DIR", dir.display(), marker.display())]
    RealData { dir: PathBuf, marker: PathBuf },
    #[error("WXLOGIN_DATA_DIR: {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Marks `data_dir` as real (`sandbox` false), or checks that it was never marked (`sandbox`).
/// Blocking: for the start, before anything serves.
pub fn claim(data_dir: &Path, sandbox: bool) -> Result<(), ModeError> {
    let marker = data_dir.join(FILE);
    let io = |source| ModeError::Io {
        path: marker.clone(),
        source,
    };
    let found = match fs::read(&marker) {
        Ok(found) => Some(found),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    match (sandbox, found) {
        // Only real mode writes the file, whatever it holds now.
        (true, Some(_)) => Err(ModeError::RealData {
            dir: data_dir.to_owned(),
            marker,
        }),
        (true, None) => Ok(()),
        (false, Some(found)) if found == REAL => Ok(()),
        (false, _) => {
            fs::create_dir_all(data_dir).map_err(io)?;
            crate::files::replace(&marker, REAL, 0o644).map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_real_mode_used_is_refused_to_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        claim(&data, true).unwrap();
        claim(&data, false).unwrap();
        assert_eq!(fs::read(data.join(FILE)).unwrap(), REAL);
        claim(&data, false).unwrap();
        assert!(matches!(
            claim(&data, true),
            Err(ModeError::RealData { .. })
        ));
    }
}
