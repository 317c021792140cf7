//! The `wasgi` command line. Thin: parse, then hand over to the library.

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
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => wasgi::run::run(args),
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

