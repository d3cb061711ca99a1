//! wxlogin-bench: drives a wxlogin server on loopback through the scenarios of
//! docs/PERFORMANCE.md and prints a table, each rate beside the same run's `/healthz` rate.

mod cluster;
mod flows;
mod http;
mod longpoll;
mod memory;
mod report;
mod server;
mod stalls;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use flows::Mode;
use http::{open_many, Error};
use longpoll::Browsers;
use report::Row;
use server::{Server, AES_KEY};

const USAGE: &str = "usage: wxlogin-bench [--quick] [--only 1,2,3,4,5,6,7] [--long-polls N] [--server PATH | --url http://127.0.0.1:PORT [--push-url http://127.0.0.1:PORT | --safe]]
       wxlogin-bench [--quick] --nodes http://127.0.0.1:A,http://127.0.0.1:B,http://127.0.0.1:C

Starts the wxlogin binary next to this one (or PATH) in sandbox mode on 127.0.0.1:0, runs
the scenarios and prints a table. --quick runs tiny sizes in seconds (CI). --url targets a
running sandbox server in plaintext mode instead, or a load balancer in front of several
nodes whose /sandbox/ routes reach their sandbox WeChat (benches/cluster.sh); scenarios 4
(memory) and 7 (storage stalls, which fills a data directory first) and scenario 2's safe mode
then still start their own servers. --push-url sends scenario 3's scans to another node than
the one holding the long-polls: the cross-node notification under load. --safe says the
server at --url has the tool's safe-mode key (WXLOGIN_AES_KEY, see benches/cluster.sh):
scenario 2 is then safe mode alone, there, and only scenarios 1 and 2 run. --long-polls holds N
long-polls in scenarios 3 and 4 instead of 10,000 (a proxy in front needs two descriptors for
each). --nodes runs only
scenario 8 against three running sandbox nodes on one PostgreSQL: scenes made on the first,
scanned on the second, waited for on the third, one at a time (scan-to-wake p50/p99).
Exits non-zero if any request failed; targets met or missed never change the exit code.";

/// How big each scenario is.
pub struct Sizes {
    pub connections: usize,
    /// How long each rate is measured.
    pub duration: Duration,
    pub status_scenes: usize,
    pub events: usize,
    /// Scanned scenes whose status is checked afterwards.
    pub verify_sample: usize,
    pub binds: usize,
    pub long_polls: usize,
    pub hold_secs: u64,
    /// Scans per second fired at the long-polling browsers.
    pub event_rate: f64,
    /// Time for requests in flight to reach the server.
    pub settle: Duration,
    pub memory_scenes: usize,
    pub memory_ttl_secs: u64,
    /// Bindings, and expired sessions, in the store scenario 7 purges and backs up.
    pub stall_records: usize,
    /// Scans whose cross-node wake scenario 8 times, one after another.
    pub cross_node_samples: usize,
}

impl Sizes {
    const FULL: Sizes = Sizes {
        connections: 32,
        duration: Duration::from_secs(5),
        status_scenes: 1_000,
        events: 50_000,
        verify_sample: 500,
        binds: 2_000,
        long_polls: 10_000,
        hold_secs: 5,
        event_rate: 2_000.0,
        settle: Duration::from_secs(2),
        memory_scenes: 100_000,
        memory_ttl_secs: 60,
        stall_records: 1_000_000,
        cross_node_samples: 1_000,
    };

    const QUICK: Sizes = Sizes {
        connections: 4,
        duration: Duration::from_millis(300),
        status_scenes: 20,
        events: 20,
        verify_sample: 20,
        binds: 5,
        long_polls: 20,
        hold_secs: 1,
        event_rate: 200.0,
        settle: Duration::from_millis(200),
        memory_scenes: 200,
        memory_ttl_secs: 1,
        stall_records: 1_000,
        cross_node_samples: 20,
    };
}

struct Options {
    quick: bool,
    only: Vec<u8>,
    server: PathBuf,
    url: Option<String>,
    /// Where scenario 3's scans go, if not to the server under load.
    push_url: Option<String>,
    /// The server at `url` takes safe-mode pushes under the tool's key, and only those.
    safe: bool,
    /// Scenario 8's three nodes.
    nodes: Vec<String>,
    /// Long-polls held in scenarios 3 and 4, if not the size's.
    long_polls: Option<usize>,
}

fn options() -> Result<Options, String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut options = Options {
        quick: false,
        only: (1..=7).collect(),
        server: here.with_file_name("wxlogin"),
        url: None,
        push_url: None,
        safe: false,
        nodes: Vec::new(),
        long_polls: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--only" => {
                options.only = value()?
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|_| format!("bad scenario {n}")))
                    .collect::<Result<_, _>>()?
            }
            "--server" => options.server = value()?.into(),
            "--url" => options.url = Some(value()?),
            "--push-url" => options.push_url = Some(value()?),
            "--safe" => options.safe = true,
            "--nodes" => options.nodes = value()?.split(',').map(str::to_owned).collect(),
            "--long-polls" => {
                let n = value()?;
                options.long_polls = Some(n.parse().map_err(|_| format!("bad --long-polls {n}"))?)
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if options.push_url.is_some() && options.url.is_none() {
        return Err("--push-url needs --url".into());
    }
    if options.safe {
        if options.url.is_none() || options.push_url.is_some() {
            return Err("--safe needs --url, and no --push-url".into());
        }
        // The other scenarios scan in plaintext, which a safe-mode server refuses.
        options.only.retain(|n| [1, 2].contains(n));
        if options.only.is_empty() {
            return Err("--safe runs scenarios 1 and 2 only".into());
        }
    }
    Ok(options)
}

/// 10,000 held connections need 10,000 descriptors here and as many in the server (which
/// inherits this limit): raise the soft limit to the hard one, and say so.
fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let before = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                eprintln!(
                    "raised the open-file limit from {before} to {} (the hard limit)",
                    limit.rlim_max
                );
            }
        }
    }
    if limit.rlim_cur < needed {
        eprintln!(
            "warning: the open-file limit is {}, below the {needed} this run needs; raise the hard limit (ulimit -Hn)",
            limit.rlim_cur
        );
    }
}

async fn run(options: &Options, sizes: &Sizes) -> Result<Vec<Row>, Error> {
    if !options.nodes.is_empty() {
        let nodes = options
            .nodes
            .iter()
            .map(|url| Server::target(url))
            .collect::<Result<Vec<_>, _>>()?;
        return cluster::cross_node_wake(&nodes, sizes).await;
    }
    let server = match &options.url {
        Some(url) => Server::target(url)?,
        None => Server::spawn(&options.server, &[])?,
    };
    eprintln!("server: http://{}", server.addr);
    let wants = |n: u8| options.only.contains(&n);
    let mut rows = Vec::new();
    let mut conns = open_many(server.addr, sizes.connections).await?;
    if wants(1) {
        let (row, back) = throughput::status_polls(&server, conns, sizes).await?;
        rows.push(row);
        conns = back;
    }
    if wants(2) && options.safe {
        let (row, back) = throughput::callback_events(&server, conns, sizes, Mode::Safe).await?;
        rows.push(row);
        conns = back;
    } else if wants(2) {
        let (row, back) = throughput::callback_events(&server, conns, sizes, Mode::Plain).await?;
        rows.push(row);
        conns = back;
        // A server with an AES key refuses plaintext pushes, so safe mode gets its own.
        let safe = Server::spawn(&options.server, &[("WXLOGIN_AES_KEY", AES_KEY.into())])?;
        let safe_conns = open_many(safe.addr, sizes.connections).await?;
        let (row, _) = throughput::callback_events(&safe, safe_conns, sizes, Mode::Safe).await?;
        rows.push(row);
    }
    if wants(3) || wants(6) {
        let (mut browsers, back) = Browsers::new(conns, sizes).await?;
        conns = back;
        if wants(6) {
            let (row, back) = longpoll::held(&server, browsers, sizes).await?;
            rows.push(row);
            browsers = back;
        }
        if wants(3) {
            let (pushers, kept) = match &options.push_url {
                Some(url) => {
                    let node = Server::target(url)?;
                    (open_many(node.addr, sizes.connections).await?, Some(conns))
                }
                None => (conns, None),
            };
            let (more, back) =
                longpoll::notification_latency(&server, pushers, browsers, sizes).await?;
            rows.extend(more);
            conns = kept.unwrap_or(back);
        }
    }
    if wants(5) {
        let (row, _) = throughput::binds(&server, conns, sizes).await?;
        rows.push(row);
    }
    drop(server);
    if wants(4) {
        rows.extend(memory::pending_scenes(&options.server, sizes).await?);
    }
    if wants(7) {
        rows.extend(stalls::storage_stalls(&options.server, sizes).await?);
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("wxlogin-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut sizes = if options.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    if let Some(n) = options.long_polls {
        sizes.long_polls = n;
    }
    let sizes = &sizes;
    raise_fd_limit((sizes.long_polls + sizes.connections) as u64 + 100);
    eprintln!("server binary: {}", options.server.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(&options, sizes)) {
        Ok(rows) => {
            report::print(&rows);
            if rows.iter().any(|row| row.failed > 0) {
                eprintln!("wxlogin-bench: some requests failed");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wxlogin-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
