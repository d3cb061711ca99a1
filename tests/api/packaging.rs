//! What ships beside the binary: the systemd unit in contrib/ passes `systemd-analyze verify`.

use std::path::Path;
use std::process::Command;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// `systemd-analyze verify` of `unit` (with `ExecStart` pointed at the binary under test, which
/// it checks exists); its complaints, empty when there are none. It exits 0 on warnings such as
/// a value it ignores, so the complaints are what counts.
fn complaints(unit: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/wxlogin",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_wxlogin")),
    );
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        said
    } else {
        format!("exit {:?}: {said}", out.status.code())
    }
}

#[test]
#[cfg_attr(
    not(has_systemd_analyze),
    ignore = "needs systemd-analyze: apt-get install systemd"
)]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/wxlogin.service"),
    )
    .unwrap();
    assert_eq!(complaints(&unit, "wxlogin.service"), "");

    // The check sees what the issue found: a comment after a value is part of the value.
    let commented = unit.replace(
        "TimeoutStopSec=15",
        "TimeoutStopSec=15 # above the shutdown timeout",
    );
    let said = complaints(&commented, "wxlogin.service");
    assert!(
        said.contains("# above the shutdown timeout"),
        "systemd-analyze must report a trailing comment: {said:?}"
    );
}
