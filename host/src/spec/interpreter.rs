//! Which interpreter a group runs (`[[group]] interpreter`, `--interpreter`);
//! finding and compiling it is `engine::interpreter`'s.

/// Which interpreter the guests run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The pinned prebuilt CPython 3.12.0, its stdlib inside the binary.
    Pinned,
    /// CPython 3.13 built here from Debian's sources by python-wasm/build:
    /// the default (complete, patched and faster than the pinned 3.12.0).
    #[default]
    Cpython313,
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cpython-3.12" | "cpython-3.12.0" | "pinned" => Ok(Choice::Pinned),
            "" | "cpython-3.13" => Ok(Choice::Cpython313),
            other => Err(format!("{other:?} is not an interpreter wasgi knows: use cpython-3.13 (built here, the default) or cpython-3.12 (the pinned prebuilt 3.12.0)")),
        }
    }
}

impl Choice {
    /// The name a user writes (`--interpreter`, `[[group]] interpreter`) and the log shows.
    pub fn name(self) -> &'static str {
        match self {
            Choice::Pinned => "cpython-3.12",
            Choice::Cpython313 => "cpython-3.13",
        }
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
