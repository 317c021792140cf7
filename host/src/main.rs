//! The `wasgi` command line. Thin: parse, then hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wasgi", version, about = "Serve WSGI apps from CPython inside a WebAssembly sandbox")]
struct Cli {
    /// The error log's format: text, or json (one object per event); overrides
    /// `log_format` in wasgi.toml and the WASGI_LOG_FORMAT environment variable.
    #[arg(long = "log-format", global = true, value_name = "FORMAT", value_parser = clap::builder::PossibleValuesParser::new(wasgi::spec::logging::LogFormat::NAMES))]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one WSGI script (a mod_wsgi `.wsgi` file or any module defining `application`).
    Run(wasgi::cli::run::RunArgs),
    /// Serve the apps of a wasgi.toml (groups, virtual hosts, capability policies).
    Serve {
        #[arg(long, value_name = "FILE", default_value = "wasgi.toml")]
        config: PathBuf,
        /// How long in-flight requests may take to finish after SIGTERM/SIGINT, in seconds
        /// (overrides `graceful_timeout` in the file, and its default).
        #[arg(long, value_name = "SECONDS")]
        graceful_timeout: Option<u64>,
        #[command(flatten)]
        interpreter: wasgi::engine::args::InterpreterArgs,
    },
    /// Check a wasgi.toml and its policies; print each group's capabilities and each app's routes.
    Check {
        #[arg(long, value_name = "FILE", default_value = "wasgi.toml")]
        config: PathBuf,
        #[command(flatten)]
        interpreter: wasgi::engine::args::InterpreterArgs,
    },
    /// Print the Apache side for a wasgi.toml: a VirtualHost per host set, ProxyPass per mount,
    /// the forwarding headers wasgi trusts, timeouts, Alias lines for static directories.
    ApacheConfig {
        #[arg(long, value_name = "FILE", default_value = "wasgi.toml")]
        config: PathBuf,
        /// Where Apache reaches wasgi, HOST:PORT or unix:/path (default: the first [[listen]]).
        #[arg(long, value_name = "ADDR")]
        backend: Option<wasgi::spec::listen::ListenAddr>,
        /// The address of each <VirtualHost>.
        #[arg(long, value_name = "ADDR", default_value = "*:80")]
        vhost_address: String,
    },
    /// Read an Apache configuration that uses mod_wsgi (following Include) and write wasgi.toml,
    /// policies, the new Apache snippet and a list of what could not be mapped.
    ImportApache {
        /// The Apache configuration file (apache2.conf, httpd.conf or a site's file).
        file: PathBuf,
        /// Where to write the result.
        #[arg(long, value_name = "DIR", default_value = "wasgi-import")]
        out: PathBuf,
        /// Where wasgi will listen for Apache: HOST:PORT or unix:/path.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
        listen: wasgi::spec::listen::ListenAddr,
        /// For relative Include paths before any ServerRoot directive (default: the file's directory).
        #[arg(long, value_name = "DIR")]
        server_root: Option<PathBuf>,
        /// The address of each <VirtualHost> in apache-wasgi.conf.
        #[arg(long, value_name = "ADDR", default_value = "*:80")]
        vhost_address: String,
    },
    /// Show a running server's groups and instances (state, age, requests served, memory, CPU,
    /// the request each is serving), like Apache's server-status, from its admin listener.
    Status {
        /// The admin listener, HOST:PORT or unix:/path (default: `admin` in --config).
        #[arg(long, value_name = "ADDR")]
        admin: Option<wasgi::spec::listen::ListenAddr>,
        #[arg(long, value_name = "FILE", default_value = "wasgi.toml")]
        config: PathBuf,
        /// Print the admin listener's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Show what the cache directory holds and how much of it no server used for a while;
    /// `wasgi cache prune` removes that.
    Cache(wasgi::cli::cache::CacheArgs),
    /// Fetch, verify and compile the Python interpreter, then print where it is.
    Python {
        #[command(flatten)]
        interpreter: wasgi::engine::args::InterpreterArgs,
        /// An app's python path (repeatable): also build the interpreter variant
        /// with the C extensions installed there, and print where that is.
        #[arg(long = "python-path", value_name = "DIR")]
        python_path: Vec<PathBuf>,
    },
}

/// `wasgi import-apache`: import, write, tell the user what happened and what is next.
fn import_apache(
    file: &std::path::Path,
    out: &std::path::Path,
    listen: wasgi::spec::listen::ListenAddr,
    server_root: Option<PathBuf>,
    vhost_address: String,
) -> anyhow::Result<()> {
    let options = wasgi::apache::import::Options { listen, server_root, out: out.to_owned(), vhost_address };
    let imported = wasgi::apache::import::import(file, &options)?;
    let written = imported.write(out)?;
    // What `wasgi check` will say about the paths, before anyone runs it.
    let check = wasgi::config::load(&out.join("wasgi.toml")).err().map(|p| p.to_string());
    print!("{}", imported.summary(file, out, &written, check.as_deref()));
    Ok(())
}

/// `wasgi status`: the admin listener named by the flag or the config file.
fn status(admin: Option<wasgi::spec::listen::ListenAddr>, config: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let addr = match admin {
        Some(addr) => addr,
        None => match wasgi::config::load(config) {
            Ok(c) => c.admin.ok_or_else(|| anyhow::anyhow!("{} has no `admin` listener: add admin = \"127.0.0.1:9000\" (or a unix: path) to it, or pass --admin", config.display()))?,
            Err(problems) => anyhow::bail!("{}: {problems}\n(or pass --admin ADDR)", config.display()),
        },
    };
    if json {
        print!("{}", wasgi::cli::status::fetch(&addr, "/status")?);
    } else {
        print!("{}", wasgi::cli::status::report(&wasgi::cli::status::status(&addr)?));
    }
    Ok(())
}

fn main() -> ExitCode {
    // wasmtime-wasi opens a span per WASI call: keep them out of the log
    // (and off the hot path: at info, time.monotonic() in a guest costs 3.5
    // times as much) unless WASGI_LOG names wasmtime's targets itself; its
    // directives come after these, so they win.
    const QUIET: &str = "wasmtime_wasi=warn,wasmtime=warn";
    let asked = std::env::var("WASGI_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = asked
        .and_then(|asked| tracing_subscriber::EnvFilter::try_new(format!("{QUIET},{asked}")).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(format!("info,{QUIET}")));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal; log files and pipes get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // Every record one physical line: a request path or a guest's output
    // cannot forge another record (wasgi::cli::logline).
    // Or one JSON object per record (`--log-format json`, `log_format`),
    // its fields at the top level beside level, target and timestamp.
    let format = wasgi::cli::logline::TextOrJson {
        text: wasgi::cli::logline::OneLinePerRecord { inner: tracing_subscriber::fmt::format() },
        json: tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(false).with_span_list(false),
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).event_format(format).init();

    let cli = Cli::parse();
    let chosen = cli.log_format.clone().or_else(|| std::env::var("WASGI_LOG_FORMAT").ok().filter(|v| !v.trim().is_empty()));
    if let Some(chosen) = chosen {
        match chosen.trim().parse::<wasgi::spec::logging::LogFormat>() {
            Ok(format) => wasgi::cli::logline::choose_format(format),
            Err(e) => {
                eprintln!("WASGI_LOG_FORMAT: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let result = match cli.command {
        Command::Run(args) => wasgi::cli::run::run(args),
        Command::Serve { config, graceful_timeout, interpreter } => {
            wasgi::cli::serve::serve(&config, &interpreter, graceful_timeout.map(std::time::Duration::from_secs))
        }
        Command::Check { config, interpreter } => match interpreter.cache_dir() {
            Err(e) => Err(e),
            Ok(cache) => match wasgi::config::plan::plan(&config, &cache, interpreter.interpreter()) {
                Ok(plan) => wasgi::cli::check::locate_interpreters(&plan, &interpreter).map(|found| {
                    print!("{}", wasgi::cli::check::report(&plan, &found));
                }),
                Err(problems) => {
                    println!("{}: {} problem(s)\n{problems}", config.display(), problems.0.len());
                    return ExitCode::FAILURE;
                }
            },
        },
        Command::ApacheConfig { config, backend, vhost_address } => {
            let config = match wasgi::config::load(&config) {
                Ok(c) => c,
                Err(problems) => {
                    eprintln!("{}: {} problem(s)\n{problems}", config.display(), problems.0.len());
                    return ExitCode::FAILURE;
                }
            };
            let options = wasgi::apache::snippet::Options { vhost_address, backend, ..Default::default() };
            match wasgi::apache::snippet::generate(&config, &options) {
                Ok(text) => {
                    print!("{text}");
                    if let Err(add) = wasgi::apache::snippet::trust(&config, &options) {
                        eprintln!("warning: {} has no trusted_proxies entry for Apache; add `{add}` at its top level, or wasgi ignores the X-Forwarded-* headers Apache sends", config.file.display());
                    }
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("{}: {e}", config.file.display())),
            }
        }
        Command::ImportApache { file, out, listen, server_root, vhost_address } => import_apache(&file, &out, listen, server_root, vhost_address),
        Command::Status { admin, config, json } => status(admin, &config, json),
        Command::Cache(args) => wasgi::cli::cache::run(&args).map(|out| print!("{out}")),
        Command::Python { interpreter, python_path } => wasgi::cli::python::prepare_interpreter(&interpreter, &python_path).map(|path| {
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

