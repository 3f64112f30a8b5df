//! The store reads a pod needs before its containers can be built: the ConfigMaps and
//! Secrets its env and volumes refer to, and its PVCs' bound PersistentVolumes. The
//! translation itself is pure ([`crate::podspec`], [`crate::volumes::payload`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use drover_store::StoreError;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use tokio::time::Instant;

use super::{PodCtx, PodCx, PodError, Running};
use crate::podspec::{self, EnvSources};
use crate::runtime::ContainerConfig;
use crate::volumes::{self, VolumeError, VolumeSources};

/// A ConfigMap's `data` and `binaryData` as bytes (`None`: not found).
async fn config_map(
    ctx: &PodCtx,
    namespace: &str,
    name: &str,
) -> Result<Option<(BTreeMap<String, String>, BTreeMap<String, Vec<u8>>)>, StoreError> {
    match ctx
        .store
        .api::<ConfigMap>()
        .get(Some(namespace), name)
        .await
    {
        Ok(cm) => {
            let data = cm.data.unwrap_or_default();
            let binary = cm
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            Ok(Some((data, binary)))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A Secret's decoded `data` merged with `stringData` (`None`: not found).
async fn secret(
    ctx: &PodCtx,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, StoreError> {
    match ctx.store.api::<Secret>().get(Some(namespace), name).await {
        Ok(s) => {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            Ok(Some(data))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The env sources of one container.
async fn env_sources(
    ctx: &PodCtx,
    namespace: &str,
    container: &Container,
) -> Result<EnvSources, StoreError> {
    let refs = podspec::env_references(container);
    let mut sources = EnvSources::default();
    for name in refs.config_maps {
        let data = config_map(ctx, namespace, &name).await?.map(|(d, _)| d);
        sources.config_maps.insert(name, data);
    }
    for name in refs.secrets {
        let data = secret(ctx, namespace, &name).await?;
        sources.secrets.insert(name, data);
    }
    Ok(sources)
}

/// The container's runtime config; `Err(message)` is a `CreateContainerConfigError`.
pub(super) async fn container_config(
    ctx: &PodCtx,
    cx: &PodCx<'_>,
    c: &Container,
    attempt: u32,
) -> Result<Result<ContainerConfig, String>, PodError> {
    let sources = env_sources(ctx, cx.namespace(), c).await?;
    let env = match podspec::resolve_env(cx.pod, c, &cx.facts, &sources) {
        Ok(env) => env,
        Err(e) => return Ok(Err(e.0)),
    };
    let (command, args) = podspec::expand_command(c, &env);
    let mounts = match cx.volumes {
        Some(paths) => {
            let spec_volumes = cx
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.volumes.clone())
                .unwrap_or_default();
            match volumes::mounts(c, &spec_volumes, paths) {
                Ok(m) => m,
                Err(e) => return Ok(Err(e.0)),
            }
        }
        None => Vec::new(),
    };
    let meta = &cx.pod.metadata;
    let labels: BTreeMap<String, String> = [
        (
            "io.kubernetes.pod.name",
            meta.name.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.namespace",
            meta.namespace.clone().unwrap_or_default(),
        ),
        (
            "io.kubernetes.pod.uid",
            meta.uid.clone().unwrap_or_default(),
        ),
        ("io.kubernetes.container.name", c.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(Ok(ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command,
        args,
        env,
        working_dir: c.working_dir.clone(),
        attempt,
        mounts,
        resources: podspec::resources(c, cx.qos, ctx.capacity.memory_bytes),
        stdin: c.stdin.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        labels,
    }))
}

/// PV annotation of the local-path provisioner: the volume is
/// `<data dir>/local-path/<pv name>` on the node it is pinned to.
pub const LOCAL_PATH_ANNOTATION: &str = "drover.io/local-path";

/// The bound PV's node path of a claim, or why there is none.
async fn claim_path(
    ctx: &PodCtx,
    namespace: &str,
    claim: &str,
) -> Result<Result<PathBuf, String>, StoreError> {
    let pvc = match ctx
        .store
        .api::<PersistentVolumeClaim>()
        .get(Some(namespace), claim)
        .await
    {
        Ok(p) => p,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Err(format!("persistentvolumeclaim \"{claim}\" not found")));
        }
        Err(e) => return Err(e),
    };
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone());
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
    let (Some("Bound"), Some(volume)) = (phase.as_deref(), volume.filter(|v| !v.is_empty())) else {
        return Ok(Err(format!(
            "persistentvolumeclaim \"{claim}\" is not bound"
        )));
    };
    let pv = match ctx.store.api::<PersistentVolume>().get(None, &volume).await {
        Ok(pv) => pv,
        Err(StoreError::NotFound { .. }) => {
            return Ok(Err(format!("persistentvolume \"{volume}\" not found")));
        }
        Err(e) => return Err(e),
    };
    // A local-path PV lives in this node's own data dir, whatever its nominal path says
    // (each node has its own data dir; see drover-controllers' localpath.rs).
    let local_path = pv
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LOCAL_PATH_ANNOTATION));
    if local_path && let Some(data_dir) = ctx.pods_dir.as_deref().and_then(|p| p.parent()) {
        return Ok(Ok(data_dir.join("local-path").join(&volume)));
    }
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        return Ok(Ok(PathBuf::from(h.path)));
    }
    if let Some(l) = spec.local {
        return Ok(Ok(PathBuf::from(l.path)));
    }
    Ok(Err(format!(
        "persistentvolume \"{volume}\" has no hostPath or local source (not supported)"
    )))
}

/// Sets up (or, after `volume_resync_interval`, refreshes) the pod's volumes. The outer
/// error is the store's; the inner one a `FailedMount`. `Ok(Ok(None))`: volumes are not
/// materialised on this node.
pub(super) async fn prepare_volumes(
    ctx: &PodCtx,
    running: &mut Running,
    pod: &Pod,
) -> Result<Result<Option<BTreeMap<String, PathBuf>>, VolumeError>, PodError> {
    let Some(pods_dir) = &ctx.pods_dir else {
        return Ok(Ok(None));
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let declared = spec.volumes.clone().unwrap_or_default();
    if declared.is_empty() {
        return Ok(Ok(Some(BTreeMap::new())));
    }
    if let Some((paths, at)) = &running.volumes
        && at.elapsed() < ctx.volume_resync_interval
    {
        return Ok(Ok(Some(paths.clone())));
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut claims = BTreeSet::new();
    for v in &declared {
        if let Some(cm) = &v.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.insert(s.secret_name.clone().unwrap_or_default());
        }
        if let Some(c) = &v.persistent_volume_claim {
            claims.insert(c.claim_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    let mut sources = VolumeSources::default();
    for name in config_maps {
        let data = config_map(ctx, &namespace, &name).await?.map(|(d, b)| {
            let mut all: BTreeMap<String, Vec<u8>> =
                d.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            all.extend(b);
            all
        });
        sources.config_maps.insert(name, data);
    }
    for name in secrets {
        let data = secret(ctx, &namespace, &name).await?;
        sources.secrets.insert(name, data);
    }
    for name in claims {
        let path = claim_path(ctx, &namespace, &name).await?;
        sources.claims.insert(name, path);
    }
    let facts = super::pod_facts(ctx, "");
    match volumes::setup(pods_dir, pod, &facts, &sources) {
        Ok(paths) => {
            running.volumes = Some((paths.clone(), Instant::now()));
            Ok(Ok(Some(paths)))
        }
        Err(e) => Ok(Err(e)),
    }
}
