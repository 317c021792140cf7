//! Who may speak for the client (`trusted_proxies`) and in which headers
//! (`trusted_proxy_headers`); what they say is read by `http::forwarded`.

use std::net::IpAddr;

use ipnet::IpNet;

/// Who may speak for the client, and in which headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    pub nets: Vec<IpNet>,
    /// Believe peers on Unix sockets (a local proxy such as Apache).
    pub unix: bool,
    pub headers: ProxyHeaders,
}

/// The forwarding headers believed from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeaders {
    pub forwarded: bool,
    pub x_forwarded_for: bool,
    pub x_forwarded_host: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_port: bool,
}

impl Default for ProxyHeaders {
    /// What Apache's mod_proxy and nginx's usual setup send; not `Forwarded`,
    /// which they pass through from the client unless told to drop it.
    fn default() -> Self {
        ProxyHeaders { forwarded: false, x_forwarded_for: true, x_forwarded_host: true, x_forwarded_proto: true, x_forwarded_port: true }
    }
}

impl ProxyHeaders {
    pub const NAMES: &'static str = "forwarded, x-forwarded-for, x-forwarded-host, x-forwarded-proto, x-forwarded-port";

    /// None of them: the start of an explicit list.
    pub fn none() -> ProxyHeaders {
        ProxyHeaders { forwarded: false, x_forwarded_for: false, x_forwarded_host: false, x_forwarded_proto: false, x_forwarded_port: false }
    }

    /// Adds a header by name (any case; mod_wsgi's `X-Forwarded-Scheme`-style
    /// names and `X-Real-IP` are not read by wasgi and are refused).
    pub fn add(&mut self, name: &str) -> Result<(), String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "forwarded" => self.forwarded = true,
            "x-forwarded-for" => self.x_forwarded_for = true,
            "x-forwarded-host" => self.x_forwarded_host = true,
            "x-forwarded-proto" => self.x_forwarded_proto = true,
            "x-forwarded-port" => self.x_forwarded_port = true,
            other => return Err(format!("{other:?} is not a forwarding header wasgi reads ({})", Self::NAMES)),
        }
        Ok(())
    }

    /// Parses a list of names, replacing the default.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<ProxyHeaders, String> {
        let mut headers = ProxyHeaders::none();
        for name in names {
            headers.add(name)?;
        }
        Ok(headers)
    }
}

impl TrustedProxies {
    /// Parses `10.0.0.0/8`, `192.0.2.1`, `::1` or `unix`.
    pub fn add(&mut self, entry: &str) -> Result<(), String> {
        let entry = entry.trim();
        if entry == "unix" {
            self.unix = true;
            return Ok(());
        }
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("{entry:?} is not an address, a CIDR block or \"unix\""))?;
        self.nets.push(net);
        Ok(())
    }

    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            Some(ip) => self.nets.iter().any(|n| n.contains(&canonical(ip))),
            None => self.unix,
        }
    }
}

/// `::ffff:10.0.0.1` is 10.0.0.1.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
