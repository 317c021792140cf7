//! Apache in front of wasgi, and moving from mod_wsgi.
//!
//! - [`conf`]: Apache configuration files read into a tree of directives
//!   (continuations, quoting, sections, `Include` with globs, `Define`).
//! - [`import`]: `wasgi import-apache`: mod_wsgi's directives mapped onto a
//!   wasgi.toml, capability policies and a list of what could not be mapped.
//! - [`snippet`]: `wasgi apache-config`: the Apache side of a wasgi.toml
//!   (virtual hosts, `ProxyPass` per mount, forwarding headers, timeouts).
//! - [`wsgi_script`]: the directories a `.wsgi` script puts on `sys.path`
//!   itself (`sys.path.insert`, `site.addsitedir`, `activate_this.py`).

pub mod conf;
pub mod import;
pub mod snippet;
pub mod wsgi_script;
