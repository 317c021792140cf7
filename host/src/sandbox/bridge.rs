//! The bridge's source, assembled at build time from the files of
//! `guest/bridge/`: they are joined, in the order below, into the one
//! module the guest runs as `wasgi_bridge` (`python -c BOOT BRIDGE CONFIG`,
//! see [`super::instance`]; python-wasm's reactor imports it by that name).
//!
//! Joined rather than imported as a package: the text reaches the guest as
//! one argument, with no file in the sandbox to grant and no import machinery
//! between the host and the request loop; each file reads the names of the
//! ones before it as module globals, as the single file did, so the
//! per-request path costs what it did. Tracebacks show `<wasgi-bridge>` and
//! the joined line (the boot code gives linecache the text).

/// Declares [`BRIDGE_SOURCE`] from one list of files, and that list for
/// the tests.
macro_rules! bridge {
    ($($file:literal),* $(,)?) => {
        /// The bridge, as the guest runs it: the files joined, each followed
        /// by a blank line.
        pub(crate) const BRIDGE_SOURCE: &str = concat!($(include_str!(concat!("../../../guest/bridge/", $file)), "\n\n"),*);

        /// The files of the bridge, in the order they are joined.
        #[cfg(test)]
        const BRIDGE_FILES: &[&str] = &[$($file),*];
    };
}

// Each file uses only what the ones before it define at import (the rest
// at call time).
bridge!("protocol.py", "transport.py", "logstream.py", "guestenv.py", "netsock.py", "loader.py", "wsgi.py", "snapshot.py", "main.py");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of guest/bridge is joined, once, and the joined text is
    /// the files in the listed order.
    #[test]
    fn every_file_is_joined_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/bridge");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = BRIDGE_FILES.iter().map(|n| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "every guest/bridge/*.py is named in bridge!(...), once");
        let joined: String = BRIDGE_FILES.iter().map(|n| std::fs::read_to_string(dir.join(n)).unwrap() + "\n\n").collect();
        assert_eq!(joined, BRIDGE_SOURCE, "BRIDGE_SOURCE is the files, in the listed order");
    }

    /// No part of the bridge rebinds the transport's functions as module
    /// globals: a request's code is given its transport.
    #[test]
    fn one_transport_object() {
        for bad in ["global send", "global read_frame", "global log", "def send(", "def read_frame(", "def log("] {
            for line in BRIDGE_SOURCE.lines() {
                assert!(!line.starts_with(bad), "the bridge defines or rebinds a module-level transport function: {line}");
            }
        }
    }
}
