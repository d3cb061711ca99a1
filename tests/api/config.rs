//! A bad setting stops the service at once, naming the setting.

use crate::helpers::run_to_exit;

#[test]
fn misconfiguration_exits_naming_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_TOKEN", "t")],
            "WXLOGIN_APPSECRET",
        ),
        (
            &[("WXLOGIN_APPID", "wx1"), ("WXLOGIN_APPSECRET", "s")],
            "WXLOGIN_TOKEN",
        ),
        (
            &[("WXLOGIN_SCENE_TTL_SECS", "five minutes")],
            "WXLOGIN_SCENE_TTL_SECS",
        ),
        (&[("WXLOGIN_BIND", "not an address")], "WXLOGIN_BIND"),
        (
            &[("WXLOGIN_AES_KEY", "only-twenty-characters")],
            "WXLOGIN_AES_KEY",
        ),
        (
            &[("WXLOGIN_WECHAT_API", "http://127.0.0.1:1")],
            "WXLOGIN_APPID",
        ),
    ];
    for (env, setting) in cases {
        let (status, stderr) = run_to_exit(env);
        assert!(!status.success(), "{env:?} started");
        assert!(stderr.contains(setting), "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn a_port_in_use_exits_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&[("WXLOGIN_BIND", &addr)]);
    assert!(!status.success());
    assert!(stderr.contains("WXLOGIN_BIND"), "{stderr}");
}
