use std::path::Path;
use std::process::ExitCode;

use wxlogin::config::Settings;
use wxlogin::startup::Application;

const USAGE: &str = "\
usage: wxlogin               run the service
       wxlogin restore FILE  load a backup (GET /admin/backup) into an empty WXLOGIN_DATA_DIR
       wxlogin rotate-key    add a next OpenID Connect signing key of each algorithm in use:
                             published at once, signing 6 minutes later; the old ones stay
                             published until the ID tokens they signed have expired

Settings come from WXLOGIN_* environment variables (see README.md); with no WXLOGIN_APPID
the service runs a sandbox with a built-in WeChat simulator.";

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("wxlogin: bad setting: {e}");
            return ExitCode::from(2);
        }
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve(settings).await,
        ["restore", file] => restore(&settings, Path::new(file)).await,
        ["rotate-key"] => rotate_key(&settings),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    wxlogin::telemetry::init(settings.log_format);
    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("wxlogin: cannot start: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxlogin: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Into an empty data directory, which then serves the mode these settings name.
async fn restore(settings: &Settings, file: &Path) -> ExitCode {
    if let Err(e) = wxlogin::mode_marker::claim(&settings.data_dir, settings.is_sandbox()) {
        eprintln!("wxlogin restore: {e}");
        return ExitCode::from(2);
    }
    match wxlogin::backup::restore(&settings.data_dir, file).await {
        Ok(count) => {
            println!(
                "restored {count} bindings into {}",
                settings.data_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxlogin restore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Safe while the service runs: it picks the new key up on its next use.
fn rotate_key(settings: &Settings) -> ExitCode {
    match wxlogin::oidc::keys::rotate(&wxlogin::oidc::key_dir(&settings.data_dir)) {
        Ok(new) => {
            for (alg, kid) in new {
                println!("new signing key {kid} ({alg:?})");
            }
            println!(
                "published now, signing in {} s (once relying parties' cached JWKS have expired); \
                 earlier keys stay in the JWKS until their ID tokens have expired",
                wxlogin::oidc::keys::ROLLOVER.as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxlogin rotate-key: {e}");
            ExitCode::FAILURE
        }
    }
}
