//! The rfsd binary: parses the command line, sets up logging, prepares and
//! runs the daemon or one operator subcommand, and turns failure into an
//! exit code: 78 (EX_CONFIG) for a configuration that cannot work and 65
//! (EX_DATAERR) for a lost or damaged database, so systemd does not restart
//! in a loop; 1 for anything else.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use rfsd::cli::{Cli, Command, ServeArgs};
use rfsd::config::{ConfigErrors, LogFormat, Settings};
use rfsd::daemon::IndexLost;
use rfsd::{admin_cli, clear_lock, daemon, demo, history_cli, offline, server, tls};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// The exit code for a configuration that cannot work (sysexits EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// The exit code for a lost or damaged database (sysexits EX_DATAERR):
/// restarting cannot help; `rfsd rebuild-index` can.
const EXIT_INDEX_LOST: u8 = 65;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err).context("starting the async runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let settings = Settings::resolve(&cli, args)?;
            init_tracing(settings.log_format);
            serve(settings, None).await
        }
        Command::Demo(args) => {
            let settings = demo::prepare(args)?;
            init_tracing(LogFormat::Text);
            serve(settings, Some(args.port)).await
        }
        Command::Keyhash => {
            let settings = Settings::resolve(&cli, &ServeArgs::default())?;
            let identity = tls::Identity::load_or_create(&settings.state_dir)?;
            println!("{}", identity.key_hash());
            Ok(())
        }
        Command::Client { command } => {
            print(admin_cli::client(&admin_socket(&cli)?, command).await?)
        }
        Command::Status(args) => print(admin_cli::status(&admin_socket(&cli)?, args.json).await?),
        Command::Log(args) => print(admin_cli::log(&admin_socket(&cli)?, args).await?),
        Command::Show(args) => print(history_cli::show(&admin_socket(&cli)?, args).await?),
        Command::Diff(args) => print(history_cli::diff(&admin_socket(&cli)?, args).await?),
        Command::Rollback(args) => print(history_cli::rollback(&admin_socket(&cli)?, args).await?),
        Command::Export(args) => print(history_cli::export(&admin_socket(&cli)?, args).await?),
        Command::RebuildIndex => {
            let settings = Settings::resolve(&cli, &ServeArgs::default())?;
            print(tokio::task::spawn_blocking(move || offline::rebuild_index(&settings)).await??)
        }
        Command::Verify(args) => {
            let settings = Settings::resolve(&cli, &ServeArgs::default())?;
            let (output, ok) = history_cli::verify(&settings, args.json).await?;
            print(output)?;
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("verification found problems"))
            }
        }
        Command::ClearLock(args) => print(clear_lock::run(&cli, args).await?),
    }
}

async fn serve(settings: Settings, demo_port: Option<u16>) -> Result<()> {
    tls::install_crypto_provider();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "rfsd starting");
    let prepared = daemon::prepare(&settings).await?;
    let listen = prepared
        .state
        .listen
        .lock()
        .map(|listen| listen.join(" "))
        .unwrap_or_default();
    if let Some(port) = demo_port {
        let key_hash = prepared
            .state
            .key_hash
            .map(|hash| hash.to_hex())
            .unwrap_or_default();
        println!("{}", demo::instructions(&settings, &key_hash, port));
    }

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let status = format!("listening on {listen}");
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!(%listen, "ready");

    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    };
    server::run(prepared.state, prepared.listeners, prepared.tls, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

fn admin_socket(cli: &Cli) -> Result<std::path::PathBuf> {
    Ok(Settings::resolve(cli, &ServeArgs::default())?.admin_socket)
}

fn print(output: String) -> Result<()> {
    print!("{output}");
    if !output.is_empty() && !output.ends_with('\n') {
        println!();
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,rfsd=info"));
    // Colours only on a terminal: journald would store the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    // This is the one message printed outside tracing: logging may not be
    // set up yet.
    eprintln!("rfsd: {err:#}");
    if err.is::<ConfigErrors>() {
        ExitCode::from(EXIT_CONFIG)
    } else if err.chain().any(|cause| cause.is::<IndexLost>()) {
        ExitCode::from(EXIT_INDEX_LOST)
    } else {
        ExitCode::FAILURE
    }
}
