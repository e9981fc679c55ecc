//! An upload as a file that lives only in memory (Linux `memfd_create`): the fluorescence
//! readers open paths, and an upload must not touch the disk unless the user asks, so the
//! bytes go to an anonymous RAM-backed file reachable as `/proc/self/fd/N` and gone when
//! dropped.
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

pub struct MemFile {
    file: File,
}

impl MemFile {
    pub fn with_bytes(bytes: &[u8]) -> Result<Self> {
        let name = c"myoscope-upload";
        // SAFETY: `name` is a valid NUL-terminated string; the returned descriptor is owned by
        // the `File` below and closed exactly once when it drops.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            bail!(
                "cannot hold the upload in memory: memfd_create failed ({})",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let mut file = unsafe { File::from_raw_fd(fd) };
        file.write_all(bytes)
            .context("cannot hold the upload in memory")?;
        Ok(Self { file })
    }

    /// A path the standard file APIs open (a new descriptor, reading from the start).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_back_through_the_path() {
        let m = MemFile::with_bytes(b"hello tiff").unwrap();
        assert_eq!(std::fs::read(m.path()).unwrap(), b"hello tiff");
        assert!(m.path().starts_with("/proc/self/fd"));
    }
}
