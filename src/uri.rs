//! `file://` URIs of ingested files. A path becomes an absolute `file://` URI with every byte
//! outside the unreserved set (and `/`) percent-encoded, so names with spaces, `#`, `%`, `?` or
//! bytes that are not UTF-8 give a URI that is valid, unambiguous in a link (a `#` in a name is
//! not a fragment), and decodes back to exactly the same path.

use std::path::{Path, PathBuf};

/// Bytes kept as they are in a path URI: RFC 3986 unreserved characters and the separator.
fn keep(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/')
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_string_lossy().replace('\\', "/").into_bytes()
}

#[cfg(unix)]
fn bytes_path(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn bytes_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

/// Percent-encodes a path's bytes.
pub fn encode_path(path: &Path) -> String {
    let mut out = String::new();
    for byte in path_bytes(path) {
        if keep(byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` when an escape is malformed.
fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The absolute path of `path` (symlinks resolved where possible).
pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        }
    })
}

/// `file://` URI of a path (absolute, symlinks resolved where possible).
pub fn file_uri(path: &Path) -> String {
    path_uri(&absolute(path))
}

/// `file://` URI of an absolute path, taken as it is.
pub fn path_uri(path: &Path) -> String {
    format!("file://{}", encode_path(path))
}

/// The path behind a `file://` URI.
pub fn uri_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    decode(rest).map(bytes_path)
}

/// The last part of a URI's path, decoded for display (`My Report #2.pdf`).
pub fn display_name(uri: &str) -> String {
    match uri_path(uri) {
        Some(path) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
        None => uri.rsplit('/').next().unwrap_or(uri).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn awkward_names_are_encoded_and_round_trip() {
        let path = Path::new("/data/My Report #2 (100%).pdf");
        let uri = path_uri(path);
        assert_eq!(uri, "file:///data/My%20Report%20%232%20%28100%25%29.pdf");
        assert_eq!(uri_path(&uri).unwrap(), path);
        assert_eq!(display_name(&uri), "My Report #2 (100%).pdf");
        assert!(
            !uri.contains('#'),
            "a # in a name must not start a fragment"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_bytes_round_trip() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9.txt"));
        let uri = path_uri(path);
        assert_eq!(uri, "file:///tmp/caf%E9.txt");
        assert_eq!(uri_path(&uri).unwrap(), path);
    }

    #[test]
    fn malformed_escapes_are_not_paths() {
        assert_eq!(uri_path("file:///a%2"), None);
        assert_eq!(uri_path("file:///a%zz"), None);
        assert_eq!(uri_path("https://example.com/a"), None);
    }

    proptest! {
        #[test]
        fn any_unicode_path_round_trips(name in "\\PC{1,40}") {
            let path = PathBuf::from("/x").join(name.replace('/', "_"));
            let uri = path_uri(&path);
            prop_assert!(uri.is_ascii());
            prop_assert_eq!(uri_path(&uri).unwrap(), path);
        }
    }
}
