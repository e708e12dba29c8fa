//! rfs-sync: keeps one machine's copy of the nShield kmdata tree in step
//! with rfsd. `main` parses the command line, runs the chosen mode, prints
//! its report and exits with the documented code.

mod args;
mod commit;
mod config;
mod connect;
mod crash;
mod durable;
mod exit;
mod identity;
mod output;
mod remote;
mod remove;
mod session;
mod setup;
mod show;
mod state;
mod status;
mod sync;
mod tls;
mod transfer;
mod update;
mod wire;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Args, Mode};
use crate::commit::CommitOptions;
use crate::config::Paths;
use crate::exit::Code;
use crate::output::emit;
use crate::session::{Access, Session};
use crate::setup::SetupOptions;
use crate::update::UpdateOptions;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => return usage_error(&err),
    };
    init_tracing(args.verbose);

    let code = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
    {
        Ok(runtime) => runtime.block_on(run(&args)),
        Err(err) => output::emit_error(args.mode().action(), &err, args.json),
    };
    ExitCode::from(code.as_u8())
}

async fn run(args: &Args) -> Code {
    let mode = args.mode();
    match dispatch(args, mode).await {
        Ok(code) => code,
        Err(err) => output::emit_error(mode.action(), &err, args.json),
    }
}

async fn dispatch(args: &Args, mode: Mode) -> Result<Code> {
    let paths = Paths::resolve(&args.kmdata);
    let json = args.json;
    let update_options = UpdateOptions {
        dry_run: args.dry_run,
        force_remote: args.force_remote,
        allow_mass_delete: args.allow_mass_delete,
        max_delete_percent: None,
    };
    let commit_options = CommitOptions {
        dry_run: args.dry_run,
        allow_delete: args.allow_delete,
        wait_lock: args.wait_lock,
    };

    let code = match mode {
        Mode::Setup => emit(
            &setup::run(&paths, SetupOptions::from_args(args)).await?,
            json,
        ),
        Mode::Show => emit(&show::run(&paths)?, json),
        Mode::Remove => emit(&remove::run(&paths).await?, json),
        Mode::Update => {
            let mut session = Session::open(paths, Access::Update, args.wait_lock).await?;
            emit(&update::run(&mut session, update_options).await?, json)
        }
        Mode::Commit => {
            let mut session = Session::open(paths, Access::Commit, args.wait_lock).await?;
            emit(&commit::run(&mut session, commit_options).await?, json)
        }
        Mode::Sync => {
            let mut session = Session::open(paths, Access::Update, args.wait_lock).await?;
            let report = sync::run(&mut session, update_options, commit_options).await?;
            emit(&report, json)
        }
        Mode::Status => {
            let mut session = Session::open(paths, Access::Inspect, None).await?;
            emit(&status::run(&mut session).await?, json)
        }
    };
    Ok(code)
}

/// Reports a command-line error the way clap does (exit code 2), and with
/// `--json` also as the one JSON object on stdout.
fn usage_error(err: &clap::Error) -> ExitCode {
    let code = err.exit_code();
    // Printing the error is all that can be done; a closed stderr is no
    // reason to exit differently.
    let _ = err.print();
    if code == Code::Usage as i32 && std::env::args().any(|arg| arg == "--json") {
        // The rendered error up to the usage line, without clap's prefix.
        let rendered = err.render().to_string();
        let lines: Vec<&str> = rendered
            .lines()
            .take_while(|line| !line.is_empty())
            .collect();
        let text = lines
            .iter()
            .map(|line| line.trim())
            .collect::<Vec<_>>()
            .join(" ");
        let message = text.strip_prefix("error: ").unwrap_or(&text);
        println!("{}", output::error_json("usage", Code::Usage, message, &[]));
    }
    ExitCode::from(u8::try_from(code).unwrap_or(Code::Error.as_u8()))
}

/// Logs to stderr at warn; -v shows rfs-sync's progress, -vv every RPC.
/// `RUST_LOG` overrides both.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,rfs_sync=info",
        2 => "warn,rfs_sync=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
