//! Tables of storage kinds: PersistentVolume and PersistentVolumeClaim.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{age, arr_at, at, is_deleting, meta_entry, name, opt_str, quantity, str_at};
use super::{AGE, Column, NAME};

/// Annotation that predates `storageClassName` and still takes precedence over it.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) const PV_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Capacity", "The storage capacity of the volume."),
    Column::string(
        "Access Modes",
        "The ways the volume can be mounted: RWO, ROX, RWX, RWOP.",
    ),
    Column::string(
        "Reclaim Policy",
        "What happens to the volume when released from its claim: Retain, Delete or Recycle.",
    ),
    Column::string(
        "Status",
        "Phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    Column::string(
        "Claim",
        "The claim bound to this volume, as namespace/name.",
    ),
    Column::string("StorageClass", "StorageClass of the pv"),
    Column::string("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
    Column::string(
        "Reason",
        "A brief CamelCase string that describes any failure.",
    ),
    AGE,
    Column::string(
        "VolumeMode",
        "Whether the volume is used with a formatted filesystem or as a raw block device.",
    )
    .wide(),
];

pub(super) fn pv_cells(volume: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(volume, "/spec/claimRef") {
        Some(_) => format!(
            "{}/{}",
            str_at(volume, "/spec/claimRef/namespace"),
            str_at(volume, "/spec/claimRef/name")
        ),
        None => String::new(),
    };
    let class = meta_entry(volume, "annotations", BETA_STORAGE_CLASS_ANNOTATION)
        .unwrap_or_else(|| str_at(volume, "/spec/storageClassName"));
    vec![
        name(volume).into(),
        quantity(at(volume, "/spec/capacity/storage")).into(),
        access_modes(arr_at(volume, "/spec/accessModes")).into(),
        str_at(volume, "/spec/persistentVolumeReclaimPolicy").into(),
        phase(volume).into(),
        claim.into(),
        class.into(),
        opt_str(volume, "/spec/volumeAttributesClassName")
            .unwrap_or("<unset>")
            .into(),
        str_at(volume, "/status/reason").into(),
        age(volume, now).into(),
        opt_str(volume, "/spec/volumeMode")
            .unwrap_or("<unset>")
            .into(),
    ]
}

pub(super) const PVC_COLUMNS: &[Column] = &[
    NAME,
    Column::string(
        "Status",
        "The current phase of the claim: Pending, Bound or Lost.",
    ),
    Column::string("Volume", "The volume bound to this claim."),
    Column::string("Capacity", "The actual resources of the underlying volume."),
    Column::string(
        "Access Modes",
        "The access modes the underlying volume actually has: RWO, ROX, RWX, RWOP.",
    ),
    Column::string("StorageClass", "StorageClass of the pvc"),
    Column::string("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
    AGE,
    Column::string(
        "VolumeMode",
        "Whether the claim is used with a formatted filesystem or as a raw block device.",
    )
    .wide(),
];

pub(super) fn pvc_cells(claim: &Value, now: Timestamp) -> Vec<Value> {
    let volume_name = str_at(claim, "/spec/volumeName");
    // Capacity and access modes are the bound volume's, so there are none before binding.
    let (capacity, modes) = if volume_name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(at(claim, "/status/capacity/storage")),
            access_modes(arr_at(claim, "/status/accessModes")),
        )
    };
    let class = meta_entry(claim, "annotations", BETA_STORAGE_CLASS_ANNOTATION)
        .or_else(|| opt_str(claim, "/spec/storageClassName"))
        .unwrap_or("");
    vec![
        name(claim).into(),
        phase(claim).into(),
        volume_name.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        opt_str(claim, "/spec/volumeAttributesClassName")
            .unwrap_or("<unset>")
            .into(),
        age(claim, now).into(),
        opt_str(claim, "/spec/volumeMode")
            .unwrap_or("<unset>")
            .into(),
    ]
}

/// `status.phase` when unset: the API server sets it on create.
const DEFAULT_PHASE: &str = "Pending";

/// The STATUS cell: `Terminating` once deletion is requested, else the phase.
fn phase(object: &Value) -> &str {
    if is_deleting(object) {
        return "Terminating";
    }
    match str_at(object, "/status/phase") {
        "" => DEFAULT_PHASE,
        phase => phase,
    }
}

/// Access modes abbreviated in a fixed order, whatever order (or repetition) they are
/// listed in: `RWO,ROX,RWX,RWOP`.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| short)
    .collect::<Vec<_>>()
    .join(",")
}
