//! Apache in front of wasgi, and moving from mod_wsgi.
//!
//! - [`conf`]: Apache configuration files read into a tree of directives
//!   (continuations, quoting, sections, `Include` with globs, `Define`).
//! - [`import`]: `wasgi import-apache`: mod_wsgi's directives mapped onto a
//!   wasgi.toml, capability policies and a list of what could not be mapped.
//! - [`snippet`]: `wasgi apache-config`: the Apache side of a wasgi.toml
//!   (virtual hosts, `ProxyPass` per mount, forwarding headers, timeouts).
//!
//! (What a `.wsgi` script puts on `sys.path` itself is read by
//! [`crate::config::wsgi_script`], which `wasgi check` uses too.)
//!
//! May use: `config`, `spec`.

pub mod conf;
pub mod import;
pub mod snippet;
