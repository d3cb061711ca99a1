//! Files replaced whole and durably: written aside, synced, renamed over the old one, and the
//! directory synced, so a crash leaves the old file or the new one, never a mix.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{fchown, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents`, with permissions `mode`. The new file keeps the owner and
/// group of the one it replaces (or, new, takes its directory's): `sudo wxlogin rotate-key` must
/// leave the key file readable by the service's own user.
///
/// Run as root in a directory the service's user can write, so nothing here follows a link
/// that user may have planted: a `path` that is a symlink is refused, and the file aside is made
/// anew (`O_EXCL | O_NOFOLLOW`), never opened where a link points.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().expect("a file is in a directory");
    let owner = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::metadata(dir)?,
        Ok(link) if link.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; refusing to replace it",
                    path.display()
                ),
            ))
        }
        owner => owner?,
    };
    let mut aside_name = path.file_name().expect("a file has a name").to_owned();
    aside_name.push(".new");
    let aside = dir.join(aside_name);
    // A crash may have left one (or someone put a link there): only the entry itself goes.
    match fs::remove_file(&aside) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(&aside)?;
    // The umask may have narrowed or widened nothing we want: set the mode exactly.
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

    #[test]
    fn no_link_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, "not yours").unwrap();
        // A link planted where the file aside goes: the link goes, its target stays.
        let path = dir.path().join("f");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("f.new")).unwrap();
        replace(&path, b"keys", 0o600).unwrap();
        assert_eq!(fs::read(&elsewhere).unwrap(), b"not yours");
        assert_eq!(fs::read(&path).unwrap(), b"keys");
        // The file itself a link: refused, the target untouched.
        let link = dir.path().join("g");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(replace(&link, b"keys", 0o600).is_err());
        assert_eq!(fs::read(&elsewhere).unwrap(), b"not yours");
    }
}
