//! Pod volumes materialised on the node, as the kubelet's volume plugins do, under
//! `<pods dir>/<pod uid>/volumes/<plugin>/<name>` (plugin dirs named as the kubelet
//! names them, `kubernetes.io~empty-dir`), and bind-mounted into containers by the
//! runtime ([`crate::runtime::Mount`]); the runtime never sees volume types.
//!
//! * emptyDir: a directory; `medium: Memory` is a tmpfs (with `sizeLimit`).
//! * hostPath: the node path itself, after the `type` check (`DirectoryOrCreate`
//!   creates it).
//! * configMap, secret, downwardAPI, projected: files written with the kubelet's
//!   atomic writer layout: the payload sits in a timestamped `..<ts>` directory, `..data`
//!   is a symlink to it and each top-level name is a symlink through `..data`. An update
//!   writes a new directory and renames a fresh symlink over `..data`, so a reader sees
//!   the old or the new payload, never a mix. Secrets live on tmpfs.
//!   `projected.serviceAccountToken` is not supported (no token issuer yet): skipped
//!   with a warning.
//! * persistentVolumeClaim: the bound PV's `hostPath` or `local` path, bind-mounted.
//!
//! Payload computation ([`Payload`]) is pure; [`setup`] and [`teardown`] do the I/O.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use crate::podspec::{self, PodFacts};
use crate::runtime::Mount;

/// Default file mode of configMap/secret/downwardAPI files (0644).
pub const DEFAULT_MODE: u32 = 0o644;
/// Name of the symlink to the current payload directory.
const DATA_DIR: &str = "..data";

/// Why a pod's volumes could not be set up (the kubelet's `FailedMount`). The pod stays
/// Pending and setup is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// Files of one configMap/secret/downwardAPI volume: relative path -> (content, mode).
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// What a volume's setup needs from the store (fetched by the caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeSources {
    /// ConfigMap name -> `data` and `binaryData` merged (`None`: missing).
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    /// Secret name -> decoded data (`None`: missing).
    pub secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    /// PVC claim name -> the bound PV's local path, or why there is none.
    pub claims: BTreeMap<String, Result<PathBuf, String>>,
}

/// The kubelet's plugin directory name of a volume.
pub fn plugin_dir(volume: &Volume) -> &'static str {
    if volume.empty_dir.is_some() {
        "kubernetes.io~empty-dir"
    } else if volume.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if volume.secret.is_some() {
        "kubernetes.io~secret"
    } else if volume.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if volume.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        "kubernetes.io~other"
    }
}

/// Files of a key/path projection (`items`, else every key), with modes.
fn project_keys(
    what: &str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let Some(data) = data else {
        if optional {
            return Ok(());
        }
        return Err(VolumeError(format!("{what} \"{name}\" not found")));
    };
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
                        out.insert(item.path.clone(), (v.clone(), mode));
                    }
                    None if optional => {}
                    None => {
                        return Err(VolumeError(format!(
                            "configuration error: key {} not found in {what} {name}",
                            item.key
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn project_downward(
    pod: &Pod,
    facts: &PodFacts,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let spec = pod.spec.clone().unwrap_or_default();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            podspec::downward_field(pod, facts, &f.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            let container = podspec::all_containers(Some(&spec))
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .or_else(|| spec.containers.first());
            match container {
                Some(c) => podspec::resource_field(
                    c,
                    facts,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                ),
                None => Ok(String::new()),
            }
        } else {
            Ok(String::new())
        }
        .map_err(|e| VolumeError(e.0))?;
        let mode = item.mode.map(|m| m as u32).unwrap_or(default_mode);
        out.insert(item.path.clone(), (value.into_bytes(), mode));
    }
    Ok(())
}

/// The files of a configMap/secret/downwardAPI/projected volume; `None` for other types.
pub fn payload(
    pod: &Pod,
    facts: &PodFacts,
    volume: &Volume,
    sources: &VolumeSources,
) -> Option<Result<Payload, VolumeError>> {
    let mode = |m: Option<i32>| m.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    let result = if let Some(cm) = &volume.config_map {
        project_keys(
            "configmap",
            &cm.name,
            sources.config_maps.get(&cm.name).and_then(|d| d.as_ref()),
            cm.items.as_ref(),
            mode(cm.default_mode),
            cm.optional == Some(true),
            &mut out,
        )
    } else if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        project_keys(
            "secret",
            &name,
            sources.secrets.get(&name).and_then(|d| d.as_ref()),
            s.items.as_ref(),
            mode(s.default_mode),
            s.optional == Some(true),
            &mut out,
        )
    } else if let Some(d) = &volume.downward_api {
        project_downward(
            pod,
            facts,
            d.items.as_deref().unwrap_or_default(),
            mode(d.default_mode),
            &mut out,
        )
    } else if let Some(p) = &volume.projected {
        let default_mode = mode(p.default_mode);
        let mut result = Ok(());
        for source in p.sources.iter().flatten() {
            let r = if let Some(cm) = &source.config_map {
                project_keys(
                    "configmap",
                    &cm.name,
                    sources.config_maps.get(&cm.name).and_then(|d| d.as_ref()),
                    cm.items.as_ref(),
                    default_mode,
                    cm.optional == Some(true),
                    &mut out,
                )
            } else if let Some(s) = &source.secret {
                project_keys(
                    "secret",
                    &s.name,
                    sources.secrets.get(&s.name).and_then(|d| d.as_ref()),
                    s.items.as_ref(),
                    default_mode,
                    s.optional == Some(true),
                    &mut out,
                )
            } else if let Some(d) = &source.downward_api {
                project_downward(
                    pod,
                    facts,
                    d.items.as_deref().unwrap_or_default(),
                    default_mode,
                    &mut out,
                )
            } else {
                tracing::warn!(
                    message = "projected volume source not supported; skipped",
                    volume = %volume.name
                );
                Ok(())
            };
            if r.is_err() {
                result = r;
                break;
            }
        }
        result
    } else {
        return None;
    };
    Some(result.map(|()| out))
}

/// `<pods dir>/<uid>`.
pub fn pod_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid)
}

/// Where a volume lives on the node (for a hostPath/PVC, the node path itself).
pub fn volume_path(
    pods_dir: &Path,
    uid: &str,
    volume: &Volume,
    sources: &VolumeSources,
) -> Result<PathBuf, VolumeError> {
    if let Some(h) = &volume.host_path {
        return Ok(PathBuf::from(&h.path));
    }
    if let Some(c) = &volume.persistent_volume_claim {
        return match sources.claims.get(&c.claim_name) {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => Err(VolumeError(e.clone())),
            None => Err(VolumeError(format!(
                "persistentvolumeclaim \"{}\" not found",
                c.claim_name
            ))),
        };
    }
    Ok(pod_dir(pods_dir, uid)
        .join("volumes")
        .join(plugin_dir(volume))
        .join(&volume.name))
}

/// Whether a volume type is one drover materialises or passes through.
fn supported(volume: &Volume) -> bool {
    volume.empty_dir.is_some()
        || volume.host_path.is_some()
        || volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
        || volume.persistent_volume_claim.is_some()
}

/// Checks (and for `*OrCreate`, creates) a hostPath per its `type`.
pub fn check_host_path(path: &Path, type_: &str) -> Result<(), VolumeError> {
    let meta = std::fs::metadata(path);
    let err = |what: &str| {
        Err(VolumeError(format!(
            "hostPath type check failed: {} is not {what}",
            path.display()
        )))
    };
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => err("a directory"),
            Err(_) => std::fs::create_dir_all(path)
                .and_then(|()| {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(|e| VolumeError(format!("creating {}: {e}", path.display()))),
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => err("a directory"),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => err("a file"),
            Err(_) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|_| ())
                .map_err(|e| VolumeError(format!("creating {}: {e}", path.display()))),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => err("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => err("a socket"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => err("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => err("a block device"),
        },
        other => Err(VolumeError(format!("unknown hostPath type {other:?}"))),
    }
}

/// Mounts a tmpfs at `dir` unless one is already there. Needs root; without it the
/// directory stays a plain directory (logged), which keeps unprivileged tests working.
fn ensure_tmpfs(dir: &Path, size_bytes: Option<u64>) -> io::Result<()> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    let data = size_bytes.map(|s| format!("size={s}"));
    let result = nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        data.as_deref(),
    );
    if let Err(error) = result {
        tracing::warn!(message = "tmpfs mount failed; using a plain directory", dir = %dir.display(), %error);
    }
    Ok(())
}

/// Mount points (from `/proc/self/mountinfo`) at or under `dir`.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect())
}

fn is_mount_point(dir: &Path) -> io::Result<bool> {
    Ok(mounts_under(dir)?.iter().any(|p| p == dir))
}

/// Writes `payload` into `dir` with the atomic writer layout; does nothing when the
/// current payload is already the same (so a resync costs a few reads).
pub fn write_atomic(dir: &Path, payload: &Payload) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let current = dir.join(DATA_DIR);
    if read_payload(&current).ok().as_ref() == Some(payload) {
        return Ok(false);
    }
    let stamp = format!(
        "..{}",
        jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f")
    );
    let new_dir = dir.join(&stamp);
    std::fs::create_dir_all(&new_dir)?;
    for (path, (content, mode)) in payload {
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            continue; // The API rejects these; never write outside the volume.
        }
        let file = new_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode & 0o7777))?;
    }
    let old_target = std::fs::read_link(&current).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, &current)?;
    // Top-level names point through ..data; drop the ones the payload no longer has.
    let top: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_target
        && old != Path::new(&stamp)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// Reads a payload back (files under `dir`, following the `..data` link).
pub fn read_payload(dir: &Path) -> io::Result<Payload> {
    fn walk(base: &Path, dir: &Path, out: &mut Payload) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(base)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(
                    rel,
                    (std::fs::read(&path)?, meta.permissions().mode() & 0o7777),
                );
            }
        }
        Ok(())
    }
    let mut out = Payload::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Materialises every volume of the pod (idempotent: an existing emptyDir is kept, API
/// volumes are rewritten only when their payload changed). Returns each volume's node
/// path by name.
pub fn setup(
    pods_dir: &Path,
    pod: &Pod,
    facts: &PodFacts,
    sources: &VolumeSources,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let io_err = |what: &str, e: io::Error| VolumeError(format!("{what}: {e}"));
    let mut paths = BTreeMap::new();
    for volume in spec.volumes.iter().flatten() {
        if !supported(volume) {
            tracing::warn!(message = "volume type not supported; skipped", volume = %volume.name);
            continue;
        }
        let path = volume_path(pods_dir, &uid, volume, sources)?;
        if let Some(h) = &volume.host_path {
            check_host_path(&path, h.type_.as_deref().unwrap_or(""))?;
        } else if volume.persistent_volume_claim.is_some() {
            if !path.is_dir() {
                std::fs::create_dir_all(&path)
                    .map_err(|e| io_err(&format!("creating {}", path.display()), e))?;
            }
        } else {
            std::fs::create_dir_all(&path)
                .map_err(|e| io_err(&format!("creating {}", path.display()), e))?;
            if let Some(e) = &volume.empty_dir {
                if e.medium.as_deref() == Some("Memory") {
                    let size = e
                        .size_limit
                        .as_ref()
                        .and_then(|q| bus_schema::validation::parse_quantity(&q.0).ok())
                        .map(|q| q.value().max(0) as u64);
                    ensure_tmpfs(&path, size).map_err(|e| io_err("tmpfs", e))?;
                }
            } else {
                if volume.secret.is_some() {
                    ensure_tmpfs(&path, None).map_err(|e| io_err("tmpfs", e))?;
                }
                if let Some(payload) = payload(pod, facts, volume, sources) {
                    write_atomic(&path, &payload?)
                        .map_err(|e| io_err(&format!("writing volume {}", volume.name), e))?;
                }
            }
        }
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

/// Whether a volume's content comes from the API (mounted read-only, as the kubelet
/// does since API data volumes became read-only).
fn api_data(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// The container's mounts from its `volumeMounts` (subPath directories are created
/// inside the volume, as the kubelet does).
pub fn mounts(
    container: &Container,
    volumes: &[Volume],
    paths: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, VolumeError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(base) = paths.get(&m.name) else {
            return Err(VolumeError(format!(
                "volume {:?} of container {:?} is not available",
                m.name, container.name
            )));
        };
        let mut host_path = base.clone();
        if let Some(sub) = m.sub_path.as_ref().filter(|s| !s.is_empty()) {
            if Path::new(sub).is_absolute() || sub.split('/').any(|c| c == "..") {
                return Err(VolumeError(format!("invalid subPath {sub:?}")));
            }
            host_path = base.join(sub);
            if std::fs::symlink_metadata(&host_path).is_err() {
                std::fs::create_dir_all(&host_path).map_err(|e| {
                    VolumeError(format!("creating subPath {}: {e}", host_path.display()))
                })?;
            }
            // A container can plant symlinks in its volume; a subPath resolving outside
            // the volume would bind-mount node paths into it (CVE-2017-1002101).
            let real_base = std::fs::canonicalize(base)
                .map_err(|e| VolumeError(format!("resolving {}: {e}", base.display())))?;
            let real = std::fs::canonicalize(&host_path)
                .map_err(|e| VolumeError(format!("resolving {}: {e}", host_path.display())))?;
            if !real.starts_with(&real_base) {
                return Err(VolumeError(format!(
                    "subPath {sub:?} resolves outside its volume"
                )));
            }
            host_path = real;
        }
        let api = volumes.iter().any(|v| v.name == m.name && api_data(v));
        out.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || api,
        });
    }
    Ok(out)
}

/// Unmounts every tmpfs under the pod's directory (deepest first) and removes it.
pub fn teardown(pods_dir: &Path, uid: &str) -> io::Result<()> {
    if uid.is_empty() {
        return Ok(());
    }
    let dir = pod_dir(pods_dir, uid);
    if !dir.exists() {
        return Ok(());
    }
    let mut mounted = mounts_under(&dir)?;
    mounted.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for m in mounted {
        if let Err(error) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(message = "unmounting volume failed", path = %m.display(), %error);
        }
    }
    std::fs::remove_dir_all(&dir)
}

#[cfg(test)]
mod tests;
