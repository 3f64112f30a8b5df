//! OCI image archives built from local files, and their import into containerd.
//!
//! Written by hand rather than with an image-building crate because drover needs only
//! the smallest case: one uncompressed layer from a few files (the pause program, test
//! images from Debian's busybox-static). The archive is a tar of `oci-layout`,
//! `index.json` and `blobs/sha256/*` (layer, config with `rootfs.diff_ids`, manifest);
//! the index entry's `io.containerd.image.name` annotation names the image on import.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::containerd::CRI_NAMESPACE;

/// The pause program's source; [`build_pause`] compiles it.
pub const PAUSE_SOURCE: &str = include_str!("../pause/pause.c");

/// Errors of image building and import. None changes cluster state.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading inputs or writing the archive failed. Retryable if transient.
    #[error("building the image archive: {0}")]
    Io(#[from] std::io::Error),
    /// The image definition is unusable (bad path, empty reference). Not retryable.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// A tool (`cc`, `ctr`) failed; the message carries its stderr. Not retryable as is.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The program that failed.
        tool: String,
        /// Its exit status and stderr.
        message: String,
    },
}

/// One entry of the image's single layer.
#[derive(Debug, Clone)]
pub enum LayerEntry {
    /// A directory (mode 0755).
    Dir(String),
    /// A regular file with its content and mode.
    File {
        /// Path inside the image, without a leading `/`.
        path: String,
        /// The bytes.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link `path -> target`.
    Symlink {
        /// Path inside the image, without a leading `/`.
        path: String,
        /// The link target.
        target: String,
    },
}

/// An image to build: a reference, one layer, and the default command.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The full reference containerd will know it by (`localhost/pause:latest`).
    pub reference: String,
    /// The layer's entries, in order.
    pub entries: Vec<LayerEntry>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
}

fn check_path(path: &str) -> Result<(), ImageError> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(ImageError::Invalid(format!(
            "layer path {path:?} must be relative without '..'"
        )));
    }
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Builds the uncompressed layer tar.
pub fn layer_tar(entries: &[LayerEntry]) -> Result<Vec<u8>, ImageError> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            LayerEntry::Dir(path) => {
                check_path(path)?;
                let mut h = header(tar::EntryType::Directory, 0, 0o755);
                b.append_data(&mut h, path, std::io::empty())?;
            }
            LayerEntry::File {
                path,
                content,
                mode,
            } => {
                check_path(path)?;
                let mut h = header(tar::EntryType::Regular, content.len() as u64, *mode);
                b.append_data(&mut h, path, content.as_slice())?;
            }
            LayerEntry::Symlink { path, target } => {
                check_path(path)?;
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                b.append_link(&mut h, path, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

/// The image architecture name (GOARCH spelling) of this machine.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds the OCI image archive (a tar) in memory.
pub fn oci_archive(spec: &ImageSpec) -> Result<Vec<u8>, ImageError> {
    if spec.reference.is_empty() {
        return Err(ImageError::Invalid("empty image reference".into()));
    }
    let layer = layer_tar(&spec.entries)?;
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": spec.entrypoint,
            "Cmd": spec.cmd,
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .map_err(|e| ImageError::Invalid(e.to_string()))?;
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))
    .map_err(|e| ImageError::Invalid(e.to_string()))?;
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    let tag = spec
        .reference
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map(|(_, t)| t)
        .unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| ImageError::Invalid(e.to_string()))?;

    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| -> Result<(), ImageError> {
        let mut h = header(tar::EntryType::Regular, data.len() as u64, 0o644);
        b.append_data(&mut h, path, data)?;
        Ok(())
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json".into(), &index)?;
    for (digest, data) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        add(format!("blobs/sha256/{hex}"), data)?;
    }
    Ok(b.into_inner()?)
}

/// Writes the archive of `spec` to `out`.
pub fn write_oci_archive(spec: &ImageSpec, out: &Path) -> Result<(), ImageError> {
    std::fs::write(out, oci_archive(spec)?)?;
    Ok(())
}

/// Imports an OCI archive into containerd's CRI namespace with `ctr images import`.
pub async fn import(ctr: &Path, socket: &Path, archive: &Path) -> Result<(), ImageError> {
    let out = tokio::process::Command::new(ctr)
        .arg("-a")
        .arg(socket)
        .args(["-n", CRI_NAMESPACE, "images", "import"])
        .arg(archive)
        .output()
        .await?;
    if !out.status.success() {
        return Err(ImageError::Tool {
            tool: ctr.display().to_string(),
            message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// Compiles [`PAUSE_SOURCE`] with `cc -static -Os` into `work_dir/pause` and returns the
/// binary's path.
pub fn build_pause(cc: &Path, work_dir: &Path) -> Result<PathBuf, ImageError> {
    let src = work_dir.join("pause.c");
    let bin = work_dir.join("pause");
    std::fs::write(&src, PAUSE_SOURCE)?;
    let out = std::process::Command::new(cc)
        .args(["-static", "-Os", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()?;
    if !out.status.success() {
        return Err(ImageError::Tool {
            tool: cc.display().to_string(),
            message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(bin)
}

/// The pause image: the static pause binary at `/pause`, its entrypoint.
pub fn pause_image(pause_binary: &Path) -> Result<ImageSpec, ImageError> {
    Ok(ImageSpec {
        reference: crate::containerd::SANDBOX_IMAGE.into(),
        entries: vec![LayerEntry::File {
            path: "pause".into(),
            content: std::fs::read(pause_binary)?,
            mode: 0o755,
        }],
        entrypoint: vec!["/pause".into()],
        cmd: vec![],
    })
}

/// A busybox image: a static busybox at `/bin/busybox` plus applet links in `/bin`, and
/// an empty `/tmp`. Command defaults to `sh`.
pub fn busybox_image(
    reference: &str,
    busybox_binary: &Path,
    applets: &[&str],
) -> Result<ImageSpec, ImageError> {
    let mut entries = vec![
        LayerEntry::Dir("bin".into()),
        LayerEntry::Dir("tmp".into()),
        LayerEntry::File {
            path: "bin/busybox".into(),
            content: std::fs::read(busybox_binary)?,
            mode: 0o755,
        },
    ];
    for applet in applets {
        entries.push(LayerEntry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    Ok(ImageSpec {
        reference: reference.into(),
        entries,
        entrypoint: vec![],
        cmd: vec!["sh".into()],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::*;

    fn untar(data: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(data);
        let mut out = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let kind = e.header().entry_type();
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).unwrap();
            out.insert(path, (kind, buf));
        }
        out
    }

    fn spec() -> ImageSpec {
        ImageSpec {
            reference: "localhost/t:v1".into(),
            entries: vec![
                LayerEntry::Dir("bin".into()),
                LayerEntry::File {
                    path: "bin/x".into(),
                    content: b"hi".to_vec(),
                    mode: 0o755,
                },
                LayerEntry::Symlink {
                    path: "bin/y".into(),
                    target: "x".into(),
                },
            ],
            entrypoint: vec![],
            cmd: vec!["/bin/x".into()],
        }
    }

    #[test]
    fn archive_is_a_consistent_oci_layout() {
        let files = untar(&oci_archive(&spec()).unwrap());
        let json = |p: &str| -> serde_json::Value { serde_json::from_slice(&files[p].1).unwrap() };
        let blob = |d: &serde_json::Value| {
            let hex = d.as_str().unwrap().trim_start_matches("sha256:");
            let data = &files[&format!("blobs/sha256/{hex}")].1;
            assert_eq!(sha256_hex(data), hex, "blob content matches its digest");
            data.clone()
        };
        assert_eq!(json("oci-layout")["imageLayoutVersion"], "1.0.0");
        let index = json("index.json");
        let entry = &index["manifests"][0];
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            "localhost/t:v1"
        );
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&entry["digest"])).unwrap();
        assert_eq!(entry["size"], blob(&entry["digest"]).len());
        let config: serde_json::Value =
            serde_json::from_slice(&blob(&manifest["config"]["digest"])).unwrap();
        let layer_digest = &manifest["layers"][0]["digest"];
        assert_eq!(config["rootfs"]["diff_ids"][0], *layer_digest);
        assert_eq!(config["config"]["Cmd"][0], "/bin/x");
        let layer = untar(&blob(layer_digest));
        assert_eq!(layer["bin/x"], (tar::EntryType::Regular, b"hi".to_vec()));
        assert_eq!(layer["bin/y"].0, tar::EntryType::Symlink);
        assert_eq!(layer["bin"].0, tar::EntryType::Directory);
    }

    #[test]
    fn archive_is_deterministic() {
        assert_eq!(oci_archive(&spec()).unwrap(), oci_archive(&spec()).unwrap());
    }

    #[test]
    fn bad_paths_are_rejected() {
        for bad in ["/abs", "a/../b", ""] {
            let mut s = spec();
            s.entries = vec![LayerEntry::Dir(bad.into())];
            assert!(
                matches!(oci_archive(&s), Err(ImageError::Invalid(_))),
                "{bad}"
            );
        }
        let mut s = spec();
        s.reference = String::new();
        assert!(matches!(oci_archive(&s), Err(ImageError::Invalid(_))));
    }
}
