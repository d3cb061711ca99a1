use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use wxlogin::config::Settings;
use wxlogin::oidc::keys::KeySet;
use wxlogin::startup::Application;

const USAGE: &str = "\
usage: wxlogin               run the service
       wxlogin restore FILE  load a backup (GET /admin/backup) into an empty store: sled in
                             WXLOGIN_DATA_DIR, or the WXLOGIN_DATABASE_URL database
       wxlogin migrate --to postgres://…
                             copy this stopped node's sled data (WXLOGIN_DATA_DIR) and
                             OpenID Connect secrets into an empty PostgreSQL database
       wxlogin rotate-key    add a next OpenID Connect signing key of each algorithm in use:
                             published at once, signing 6 minutes later; the old ones stay
                             published until the ID tokens they signed have expired
       wxlogin healthcheck   exit 0 if the service on WXLOGIN_BIND answers GET /healthz
                             (for a container's HEALTHCHECK: the image has no curl)
       wxlogin --version     the version and the commit it was built from
       wxlogin --help        this text

Settings come from WXLOGIN_* environment variables (see README.md); with no WXLOGIN_APPID
the service runs a sandbox with a built-in WeChat simulator.";

const VERSION: &str = concat!(
    "wxlogin ",
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WXLOGIN_COMMIT"),
    ")"
);

/// To stdout, ignoring a closed pipe (`wxlogin --help | head -1`): nothing is lost that the
/// reader wanted, and `println!` would panic.
fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Before the settings: help and version answer whatever the environment holds.
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["-h" | "--help"] => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        ["-V" | "--version"] => {
            say(VERSION);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
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
        ["rotate-key"] => rotate_key(&settings).await,
        ["migrate", "--to", url] => migrate(&settings, url).await,
        ["healthcheck"] => healthcheck(&settings).await,
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    wxlogin::telemetry::init(settings.log_format);
    let app = match Application::build(settings).await {
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

/// Into an empty store, which then serves the mode these settings name.
async fn restore(settings: &Settings, file: &Path) -> ExitCode {
    if let Err(e) = wxlogin::mode_marker::claim(&settings.data_dir, settings.is_sandbox()) {
        eprintln!("wxlogin restore: {e}");
        return ExitCode::from(2);
    }
    let store = match wxlogin::startup::open_store(settings).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("wxlogin restore: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match wxlogin::backup::restore(&store, file).await {
        Ok(count) => {
            // Never the database's URL: it may hold a password.
            let into = match settings.database {
                Some(_) => "the database".to_owned(),
                None => settings.data_dir.display().to_string(),
            };
            say(&format!("restored {count} bindings into {into}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxlogin restore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The sled store in the data directory and the provider's secrets beside it, into the empty
/// database at `url` (TLS trusting WXLOGIN_DATABASE_CA when WXLOGIN_DATABASE_URL is set too).
async fn migrate(settings: &Settings, url: &str) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("wxlogin migrate: {e}");
        ExitCode::FAILURE
    };
    let ca_file = settings.database.as_ref().and_then(|d| d.0.ca_file.clone());
    let target = match wxlogin_storage::PgSettings::parse(url, 2, ca_file) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("wxlogin migrate: --to: {e}");
            return ExitCode::from(2);
        }
    };
    // The database then serves the mode the directory did, which must be these settings'.
    if let Err(e) = wxlogin::mode_marker::claim(&settings.data_dir, settings.is_sandbox()) {
        eprintln!("wxlogin migrate: {e}");
        return ExitCode::from(2);
    }
    match wxlogin_storage::Store::open_postgres(&target).await {
        Ok(store) => {
            if let Err(e) =
                wxlogin::mode_marker::claim_database(&store, settings.is_sandbox()).await
            {
                eprintln!("wxlogin migrate: --to: {e}");
                return ExitCode::from(e.exit_code());
            }
        }
        Err(e) => return fail(&e),
    }
    let documents = match wxlogin::oidc::secret_documents(&settings.data_dir) {
        Ok(documents) => documents,
        Err(e) => return fail(&e),
    };
    let documents: Vec<_> = documents.iter().map(|(n, b)| (*n, b.clone())).collect();
    match wxlogin_storage::migrate::sled_to_postgres(&settings.data_dir, &target, &documents).await
    {
        Ok(copied) => {
            say(&format!(
                "copied {copied} from {} into the database; start the nodes with \
                 WXLOGIN_DATABASE_URL set to it",
                settings.data_dir.display()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Safe while the service runs: it picks the new key up on its next use (every node, from the
/// database, where the store is PostgreSQL).
async fn rotate_key(settings: &Settings) -> ExitCode {
    let dir = wxlogin::oidc::key_dir(&settings.data_dir);
    // Not sled: the running service holds its lock, and the file is all rotation needs.
    let set = match &settings.database {
        Some(_) => match wxlogin::startup::open_store(settings).await {
            Ok(store) => KeySet::of(&dir, &store),
            Err(e) => {
                eprintln!("wxlogin rotate-key: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => KeySet::File(dir),
    };
    match wxlogin::oidc::keys::rotate(&set).await {
        Ok(new) => {
            for (alg, kid) in new {
                say(&format!("new signing key {kid} ({alg:?})"));
            }
            say(&format!(
                "published now, signing in {} s (once relying parties' cached JWKS have expired); \
                 earlier keys stay in the JWKS until their ID tokens have expired",
                wxlogin::oidc::keys::ROLLOVER.as_secs()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxlogin rotate-key: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /healthz` on this machine's end of `WXLOGIN_BIND` (a wildcard address is reached on
/// loopback).
async fn healthcheck(settings: &Settings) -> ExitCode {
    let mut address = settings.bind;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    // Straight to the local port, whatever HTTP_PROXY a container sets.
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("wxlogin healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = client
        .get(format!("http://{address}/healthz"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await;
    match answer {
        Ok(answer) if answer.status().is_success() => ExitCode::SUCCESS,
        Ok(answer) => {
            eprintln!(
                "wxlogin healthcheck: {address} answered {}",
                answer.status()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("wxlogin healthcheck: {address}: {e}");
            ExitCode::FAILURE
        }
    }
}
