//! What an attacker writes: tar archives the `tar` crate would refuse to build (absolute and
//! `..` names, long-name bombs, devices, duplicates), and manifests and data objects planted
//! straight into the store under test, as anyone with write access to a bucket could.

use std::io::Write;

use ferry_core::env_vars::Environment;
use ferry_core::manifest;
use ferry_core::store::Store;
use serde_json::{Value, json};
use tar::{EntryType, Header};

use crate::TestContext;

/// The project every test context uses.
pub const PROJECT: &str = "acme/app";

/// Raw tar bytes, one header at a time.
#[derive(Default)]
pub struct Tar {
    out: Vec<u8>,
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

impl Tar {
    pub fn new() -> Self {
        Self::default()
    }

    /// One header with its fields written as given (names cut at 100 bytes, as fields are).
    fn header(kind: EntryType, name: &[u8], link: &[u8], size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        old.linkname[..l].copy_from_slice(&link[..l]);
        h.set_cksum();
        h
    }

    /// Any entry; names and link targets over 100 bytes get GNU long-name records first.
    pub fn entry(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: &[u8],
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        if name.len() > 100 {
            self.record(EntryType::GNULongName, name);
        }
        if link.len() > 100 {
            self.record(EntryType::GNULongLink, link);
        }
        let h = Self::header(kind, name, link, data.len() as u64, mode);
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        pad(&mut self.out);
        self
    }

    /// A GNU long-name or long-link record holding `value`.
    pub fn record(&mut self, kind: EntryType, value: &[u8]) -> &mut Self {
        let mut data = value.to_vec();
        data.push(0);
        let h = Self::header(kind, b"././@LongLink", b"", data.len() as u64, 0o644);
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(&data);
        pad(&mut self.out);
        self
    }

    /// A PAX extended header with these records.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            // "LEN key=value\n", where LEN counts itself.
            let body = k.len() + v.len() + 3;
            let mut len = body + body.to_string().len();
            if len.to_string().len() != body.to_string().len() {
                len += 1;
            }
            data.extend(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Self::header(
            EntryType::XHeader,
            b"PaxHeader",
            b"",
            data.len() as u64,
            0o644,
        );
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(&data);
        pad(&mut self.out);
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(
            EntryType::Directory,
            format!("{name}/").as_bytes(),
            b"",
            0o755,
            b"",
        )
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, name.as_bytes(), b"", 0o644, data)
    }

    pub fn file_mode(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, name.as_bytes(), b"", mode, data)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            0o777,
            b"",
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            EntryType::Link,
            name.as_bytes(),
            target.as_bytes(),
            0o644,
            b"",
        )
    }

    /// The archive with its end-of-archive blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }

    /// The archive without its end, cut inside its last entry's data.
    pub fn truncated(&self, cut: usize) -> Vec<u8> {
        self.out[..self.out.len().saturating_sub(cut)].to_vec()
    }
}

/// A zstd stream of a tar holding one GNU long-name record that announces `size` bytes of
/// name (written, not held in memory), then a small file: a few KB that would otherwise make
/// a restore read the whole name into memory.
pub fn long_name_bomb(size: u64) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 3).expect("a zstd encoder");
    let h = Tar::header(EntryType::GNULongName, b"././@LongLink", b"", size, 0o644);
    enc.write_all(h.as_bytes()).expect("write");
    let chunk = vec![b'x'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
    let rem = (size % 512) as usize;
    if rem != 0 {
        enc.write_all(&vec![0u8; 512 - rem]).expect("write");
    }
    let mut tail = Tar::new();
    tail.file("tree/x", b"x");
    enc.write_all(&tail.finish()).expect("write");
    enc.finish().expect("finish zstd")
}

/// The same as [`long_name_bomb`], with the name in a PAX `path` record instead.
pub fn pax_name_bomb(size: u64) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 3).expect("a zstd encoder");
    let h = Tar::header(EntryType::XHeader, b"PaxHeader", b"", size, 0o644);
    enc.write_all(h.as_bytes()).expect("write");
    let prefix = format!("{size} path=");
    enc.write_all(prefix.as_bytes()).expect("write");
    let chunk = vec![b'x'; 1 << 20];
    let mut left = size - prefix.len() as u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
    let rem = (size % 512) as usize;
    if rem != 0 {
        enc.write_all(&vec![0u8; 512 - rem]).expect("write");
    }
    let mut tail = Tar::new();
    tail.file("tree/x", b"x");
    enc.write_all(&tail.finish()).expect("write");
    enc.finish().expect("finish zstd")
}

/// Compresses a tar with zstd, as ferry's default format does.
pub fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).expect("zstd")
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The store under test, opened as ferry opens it, with a small runtime to drive it.
pub struct Direct {
    store: Store,
    rt: tokio::runtime::Runtime,
}

impl Direct {
    pub fn put(&self, rel: &str, bytes: Vec<u8>) {
        self.rt
            .block_on(self.store.overwrite(rel, bytes.into()))
            .unwrap_or_else(|e| panic!("plant {rel}: {e}"));
    }

    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        self.rt
            .block_on(self.store.read(rel))
            .unwrap_or_else(|e| panic!("read {rel}: {e}"))
            .map(|b| b.to_vec())
    }

    pub fn delete(&self, rel: &str) {
        self.rt
            .block_on(self.store.delete(rel))
            .unwrap_or_else(|e| panic!("delete {rel}: {e}"));
    }

    /// Every object below `prefix` with its size, sorted by path.
    pub fn sizes(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .rt
            .block_on(self.store.list(prefix))
            .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
            .into_iter()
            .map(|m| (m.path, m.size))
            .collect();
        v.sort();
        v
    }

    /// Every object below `prefix`, as paths below the store's own prefix.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .rt
            .block_on(self.store.list(prefix))
            .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
            .into_iter()
            .map(|m| m.path)
            .collect();
        v.sort();
        v
    }
}

impl TestContext {
    /// The store under test, for planting and reading objects directly.
    pub fn direct(&self) -> Direct {
        let mut pairs = self.env_pairs();
        pairs.push(("HOME".into(), self.home.display().to_string()));
        let env = Environment::from_pairs(pairs);
        let store = Store::open(&self.store, &env).expect("open the store under test");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Direct { store, rt }
    }
}

/// What a planted cache entry says about itself.
pub struct Planted {
    pub key: String,
    pub paths: Vec<String>,
    pub links_out: Vec<(String, String)>,
    /// The data object as stored.
    pub data: Vec<u8>,
    /// `zstd`, `gzip` or `tar`.
    pub compression: &'static str,
    pub files: u64,
    pub unpacked_bytes: u64,
    pub entry_count: Option<u64>,
    /// The size and digest the manifest records, when they should not match the data.
    pub recorded: Option<(u64, String)>,
}

impl Planted {
    /// A cache of `key` holding `tar`, compressed with zstd, claiming `paths`; its counts are
    /// generous so that only the test's subject can fail it.
    pub fn cache(key: &str, paths: &[&str], tar: &[u8]) -> Self {
        Self {
            key: key.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            links_out: Vec::new(),
            data: zstd(tar),
            compression: "zstd",
            files: 1,
            unpacked_bytes: 1 << 30,
            entry_count: None,
            recorded: None,
        }
    }

    fn data_fields(&self, path: &str) -> Value {
        let (size, sha) = self
            .recorded
            .clone()
            .unwrap_or_else(|| (self.data.len() as u64, sha256(&self.data)));
        json!({ "path": path, "size": size, "sha256": sha })
    }

    /// Writes the data object and the cache manifest into the store; returns the manifest's
    /// path.
    pub fn plant(&self, ctx: &TestContext) -> String {
        self.plant_in_scope(ctx, None)
    }

    pub fn plant_in_scope(&self, ctx: &TestContext, scope: Option<&str>) -> String {
        let direct = ctx.direct();
        let dir = match scope {
            None => format!("{}/caches", manifest::project_dir(PROJECT)),
            Some(s) => format!(
                "{}/scopes/{}/caches",
                manifest::project_dir(PROJECT),
                ferry_core::paths::encode_part(s)
            ),
        };
        let data_rel = format!("{dir}/data/planted-{}.tar", &sha256(&self.data)[..16]);
        direct.put(&data_rel, self.data.clone());
        let mut m = json!({
            "format": 1,
            "kind": "cache",
            "created": chrono_now(),
            "expires": "2999-01-01T00:00:00Z",
            "data": self.data_fields(&data_rel),
            "key": self.key,
            "compression": self.compression,
            "paths": self.paths,
            "links_out": self.links_out,
            "files": self.files,
            "unpacked_bytes": self.unpacked_bytes,
            "ttl_seconds": 86400,
        });
        if let Some(n) = self.entry_count {
            m["entry_count"] = n.into();
        }
        let rel = format!("{dir}/keys/{}.json", manifest::object_name(&self.key));
        direct.put(&rel, serde_json::to_vec_pretty(&m).expect("json"));
        rel
    }

    /// Writes the data object and a layer manifest of `job` into workflow `workflow`.
    pub fn plant_layer(
        &self,
        ctx: &TestContext,
        workflow: &str,
        job: &str,
        names: &[&str],
    ) -> String {
        let direct = ctx.direct();
        let dir = format!(
            "{}/workspaces/{}",
            manifest::project_dir(PROJECT),
            ferry_core::paths::encode_part(workflow)
        );
        let id = format!("20260101T000000.000000Z-{}", &sha256(&self.data)[..12]);
        let data_rel = format!("{dir}/data/{id}.tar.zst");
        direct.put(&data_rel, self.data.clone());
        let m = json!({
            "format": 1,
            "kind": "layer",
            "created": chrono_now(),
            "expires": "2999-01-01T00:00:00Z",
            "data": self.data_fields(&data_rel),
            "id": id,
            "workflow": workflow,
            "job": job,
            "parents": [],
            "compression": self.compression,
            "paths": self.paths,
            "links_out": self.links_out,
            "entries": { "files": names, "dirs": [], "symlinks": [] },
            "files": self.files,
            "unpacked_bytes": self.unpacked_bytes,
            "ttl_seconds": 86400,
        });
        let rel = format!("{dir}/layers/{id}.json");
        direct.put(&rel, serde_json::to_vec_pretty(&m).expect("json"));
        rel
    }
}

/// Plants an artifact manifest for `path` (any string, as a store writer could) with `data`.
pub fn plant_artifact(
    ctx: &TestContext,
    run: &str,
    job: &str,
    path: &str,
    mode: &str,
    data: &[u8],
) {
    let direct = ctx.direct();
    let dir = format!("{}/artifacts", manifest::project_dir(PROJECT));
    let data_rel = format!("{dir}/data/planted-{}/file", &sha256(data)[..16]);
    direct.put(&data_rel, data.to_vec());
    let m = json!({
        "format": 1,
        "kind": "artifact",
        "created": chrono_now(),
        "expires": null,
        "data": { "path": data_rel, "size": data.len(), "sha256": sha256(data) },
        "run": run,
        "job": job,
        "path": path,
        "mode": mode,
        "ttl_seconds": null,
    });
    let rel = format!(
        "{dir}/runs/{}/{}/{}.json",
        ferry_core::paths::encode_part(run),
        ferry_core::paths::encode_part(job),
        manifest::object_name(path)
    );
    direct.put(&rel, serde_json::to_vec_pretty(&m).expect("json"));
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// One item of a planted chunked entry.
pub enum Item<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

/// A chunked (format 2) cache entry built by hand: its index, its one pack (a zstd frame per
/// file) and its manifest, each open to tampering before it is planted. The manifest records
/// the digests of what is planted, so only the content is hostile.
pub struct PlantedChunked {
    pub key: String,
    pub index: ferry_core::chunks::index::Index,
    pub pack: Vec<u8>,
    pub manifest: Value,
    /// Replaces the index object's bytes (still recorded with their true digest).
    pub raw_index: Option<Vec<u8>>,
}

impl PlantedChunked {
    pub fn cache(key: &str, paths: &[&str], items: &[Item<'_>]) -> Self {
        use ferry_core::chunks::index::{Block, Chunk, Entry, INDEX_VERSION, Index, Kind};
        use ferry_core::chunks::{ChunkHash, ChunkerParams};
        let dir = format!("{}/caches", manifest::project_dir(PROJECT));
        let pack_rel = format!("{dir}/packs/planted.pack");
        let mut pack = Vec::new();
        let mut index = Index {
            version: INDEX_VERSION,
            chunker: ChunkerParams::default(),
            packs: vec![pack_rel],
            blocks: Vec::new(),
            chunks: Vec::new(),
            entries: Vec::new(),
            whole_roots: paths.iter().map(|p| p.to_string()).collect(),
            excludes: Vec::new(),
            steps: Vec::new(),
        };
        let mut bytes = 0u64;
        for item in items {
            let (name, kind, mode, size, chunks, target) = match item {
                Item::Dir(n) => (*n, Kind::Dir, 0o755, 0, vec![], None),
                Item::Symlink(n, t) => (*n, Kind::Symlink, 0, 0, vec![], Some(t.to_string())),
                Item::File(n, data) => {
                    let frame = zstd::bulk::compress(data, 3).expect("zstd");
                    let b = index.blocks.len() as u32;
                    index.blocks.push(Block(
                        0,
                        pack.len() as u64,
                        frame.len() as u32,
                        data.len() as u32,
                    ));
                    pack.extend_from_slice(&frame);
                    let c = index.chunks.len() as u32;
                    index
                        .chunks
                        .push(Chunk(b, 0, data.len() as u32, ChunkHash::of(data)));
                    bytes += data.len() as u64;
                    let chunks = if data.is_empty() { vec![] } else { vec![c] };
                    (*n, Kind::File, 0o644, data.len() as u64, chunks, None)
                }
            };
            index.entries.push(Entry {
                name: name.to_string(),
                kind,
                mode,
                mtime: 1_600_000_000,
                size,
                chunks,
                target,
            });
        }
        let files = items.iter().filter(|i| matches!(i, Item::File(..))).count();
        let manifest = json!({
            "format": 2,
            "kind": "cache",
            "created": chrono_now(),
            "expires": "2999-01-01T00:00:00Z",
            "encoding": "chunked",
            "key": key,
            "compression": "zstd",
            "paths": paths,
            "links_out": [],
            "files": files,
            "unpacked_bytes": bytes,
            "entry_count": items.len(),
            "ttl_seconds": 86400,
        });
        Self {
            key: key.into(),
            index,
            pack,
            manifest,
            raw_index: None,
        }
    }

    /// Writes the pack, the index and the manifest; returns the manifest's path.
    pub fn plant(&self, ctx: &TestContext) -> String {
        let direct = ctx.direct();
        let dir = format!("{}/caches", manifest::project_dir(PROJECT));
        let pack_rel = format!("{dir}/packs/planted.pack");
        direct.put(&pack_rel, self.pack.clone());
        let index = self
            .raw_index
            .clone()
            .unwrap_or_else(|| ferry_core::chunks::index::encode(&self.index));
        let index_rel = format!("{dir}/data/planted-{}.index.zst", &sha256(&index)[..16]);
        direct.put(&index_rel, index.clone());
        let mut m = self.manifest.clone();
        m["data"] = json!({ "path": index_rel, "size": index.len(), "sha256": sha256(&index) });
        if m.get("packs").is_none() {
            m["packs"] = json!([{
                "path": pack_rel,
                "size": self.pack.len(),
                "used": [[0, self.pack.len()]],
            }]);
        }
        let rel = format!("{dir}/keys/{}.json", manifest::object_name(&self.key));
        direct.put(&rel, serde_json::to_vec_pretty(&m).expect("json"));
        rel
    }
}
