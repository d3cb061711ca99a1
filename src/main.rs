use std::process::ExitCode;

use wxlogin::config::Settings;
use wxlogin::startup::Application;

const USAGE: &str = "usage: wxlogin\n\nRuns the service. Settings come from WXLOGIN_* environment variables (see README.md);\nwith no WXLOGIN_APPID it runs a sandbox with a built-in WeChat simulator.";

#[actix_web::main]
async fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        let help = arg == "-h" || arg == "--help";
        eprintln!("{USAGE}");
        return if help {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("wxlogin: bad setting: {e}");
            return ExitCode::from(2);
        }
    };
    wxlogin::telemetry::init(settings.log_format);
    let app = match Application::build(settings) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("wxlogin: cannot start: {e}");
            return ExitCode::FAILURE;
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
