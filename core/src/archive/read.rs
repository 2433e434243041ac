//! The tar entry loop: reads a tar stream header by header and hands each entry to a
//! [`Lander`]. The stream is read raw, so every GNU long-name and PAX record is bounded
//! before it is read (a 9 KB archive can otherwise announce a 256 MiB name).

use std::io::Read;

use tar::EntryType;

use super::ArchiveError;
use crate::trust::rules::{NAME_MAX, shown};
use crate::unpack::Lander;

/// The largest PAX extended header read (names and targets are bounded again on their own).
const PAX_MAX: u64 = 64 * 1024;

fn corrupt(e: std::io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: e.to_string(),
    }
}

fn refuse(name: &[u8], reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Unsafe {
        entry: shown(name),
        reason: reason.into(),
    }
}

/// Reads one extension record (a long name, a long link target, a PAX header), refusing it
/// when it announces more than `max` bytes.
fn record<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let size = entry.size();
    if size > max {
        return Err(ArchiveError::Unsafe {
            entry: shown(&entry.header().path_bytes()),
            reason: format!("a {what} record of {size} bytes, over the {max}-byte limit"),
        });
    }
    let mut out = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut out).map_err(corrupt)?;
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// What extension records said about the next entry.
#[derive(Default)]
struct Pending {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.name.is_none() && self.link.is_none()
    }
}

/// Reads every entry of the tar stream `input` into `lander`.
pub(crate) fn read_tar<R: Read>(input: R, lander: &mut Lander) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(corrupt)?.raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::GNULongName => {
                if pending.name.is_some() {
                    return Err(refuse(b"", "two long names for one entry"));
                }
                pending.name = Some(record(&mut entry, NAME_MAX as u64 + 1, "long name")?);
                continue;
            }
            EntryType::GNULongLink => {
                if pending.link.is_some() {
                    return Err(refuse(b"", "two long link targets for one entry"));
                }
                pending.link = Some(record(&mut entry, NAME_MAX as u64 + 1, "long link")?);
                continue;
            }
            EntryType::XHeader => {
                let data = record(&mut entry, PAX_MAX, "PAX header")?;
                for ext in tar::PaxExtensions::new(&data) {
                    let ext = ext.map_err(corrupt)?;
                    match ext.key_bytes() {
                        b"path" => pending.name = Some(ext.value_bytes().to_vec()),
                        b"linkpath" => pending.link = Some(ext.value_bytes().to_vec()),
                        // In raw reading the header's size field decides where data ends; a
                        // PAX size that disagrees would make two readers see two archives.
                        b"size" => {
                            return Err(refuse(
                                &entry.header().path_bytes(),
                                "PAX size records are not restored",
                            ));
                        }
                        _ => {}
                    }
                }
                continue;
            }
            EntryType::XGlobalHeader => {
                record(&mut entry, PAX_MAX, "PAX global header")?;
                continue;
            }
            _ => {}
        }
        let header = entry.header();
        let name = match pending.name.take() {
            Some(n) => n,
            None => header.path_bytes().into_owned(),
        };
        let link = match pending.link.take() {
            Some(l) => Some(l),
            None => header.link_name_bytes().map(|l| l.into_owned()),
        };
        let mode = header.mode().map_err(corrupt)?;
        let mtime = i64::try_from(header.mtime().map_err(corrupt)?).unwrap_or(i64::MAX);
        let size = entry.size();
        if size > 0 && !matches!(kind, EntryType::Regular | EntryType::Continuous) {
            return Err(refuse(
                &name,
                format!("a {kind:?} entry that carries {size} bytes"),
            ));
        }
        match kind {
            EntryType::Directory => lander.dir(&name, mode, mtime)?,
            EntryType::Regular | EntryType::Continuous => {
                lander.file(&name, mode, mtime, size, &mut entry, &corrupt)?
            }
            EntryType::Symlink => {
                let target = link.ok_or_else(|| refuse(&name, "a symlink without a target"))?;
                lander.symlink(&name, &target, mtime)?
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| refuse(&name, "a hard link without a target"))?;
                lander.hard_link(&name, &target)?
            }
            EntryType::GNUSparse => return Err(refuse(&name, "sparse entries are not restored")),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(refuse(
                    &name,
                    "devices and FIFOs are not restored (only files, folders and links)",
                ));
            }
            other => {
                return Err(refuse(
                    &name,
                    format!("entry type {other:?} is not restored (only files, folders and links)"),
                ));
            }
        }
    }
    if !pending.is_empty() {
        return Err(ArchiveError::Corrupt {
            detail: "a long-name or PAX record with no entry after it".into(),
        });
    }
    Ok(())
}
