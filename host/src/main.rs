//! The `wasgi` command line. Thin: parse, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wasgi", version, about = "Serve WSGI apps from CPython inside a WebAssembly sandbox")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one WSGI script (a mod_wsgi `.wsgi` file or any module defining `application`).
    Run(wasgi::run::RunArgs),
    /// Serve the apps of a wasgi.toml (groups, virtual hosts, capability policies).
    Serve {
        #[arg(long, value_name = "FILE", default_value = "wasgi.toml")]
        config: PathBuf,
        /// How long in-flight requests may take to finish after SIGTERM/SIGINT, in seconds
        /// (overrides `graceful_timeout` in the file; default 30).
        #[arg(long, value_name = "SECONDS")]
        graceful_timeout: Option<u64>,
        #[command(flatten)]
        interpreter: wasgi::run::InterpreterArgs,
    },
    /// Check a wasgi.toml and its policies; print each group's capabilities and each app's routes.
    Check {
        #[arg(long, value_name = "FILE", default_value = "wasgi.toml")]
        config: PathBuf,
        #[command(flatten)]
        interpreter: wasgi::run::InterpreterArgs,
    },
    /// Fetch, verify and compile the Python interpreter, then print where it is.
    Python {
        #[command(flatten)]
        interpreter: wasgi::run::InterpreterArgs,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASGI_LOG")
        // wasmtime-wasi opens a span per WASI call: keep them out of the log
        // (and off the hot path) unless asked for.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime_wasi=warn,wasmtime=warn"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal; log files and pipes get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => wasgi::run::run(args),
        Command::Serve { config, graceful_timeout, interpreter } => {
            wasgi::check::serve(&config, &interpreter, graceful_timeout.map(std::time::Duration::from_secs))
        }
        Command::Check { config, interpreter } => match wasgi::check::plan(&config, &interpreter.cache_dir()) {
            Ok(plan) => {
                print!("{}", wasgi::check::report(&plan));
                Ok(())
            }
            Err(problems) => {
                println!("{}: {} problem(s)\n{problems}", config.display(), problems.0.len());
                return ExitCode::FAILURE;
            }
        },
        Command::Python { interpreter } => wasgi::run::prepare_interpreter(&interpreter).map(|path| {
            println!("{}", path.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

