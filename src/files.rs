//! Files replaced whole and durably: written aside, synced, renamed over the old one, and the
//! directory synced, so a crash leaves the old file or the new one, never a mix.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{fchown, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents`, with permissions `mode`. The new file keeps the owner and
/// group of the one it replaces (or, new, takes its directory's): `sudo wxlogin rotate-key` must
/// leave the key file readable by the service's own user.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().expect("a file is in a directory");
    let owner = match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::metadata(dir)?,
        owner => owner?,
    };
    let mut aside_name = path.file_name().expect("a file has a name").to_owned();
    aside_name.push(".new");
    let aside = dir.join(aside_name);
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&aside)?;
    // A file left aside by a crash keeps its old mode through `open`: set it again.
    out.set_permissions(Permissions::from_mode(mode))?;
    let made = out.metadata()?;
    if (made.uid(), made.gid()) != (owner.uid(), owner.gid()) {
        fchown(&out, Some(owner.uid()), Some(owner.gid()))?;
    }
    out.write_all(contents)?;
    out.sync_all()?;
    fs::rename(&aside, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_has_the_new_contents_and_mode_even_over_a_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(dir.path().join("f.new"), "half-written").unwrap();
        fs::set_permissions(dir.path().join("f.new"), Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"one", 0o600).unwrap();
        replace(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("f.new").exists());
    }
}
