//! Strategic-merge metadata of the built-in kinds: which list fields merge, and by which key.
//!
//! Kubernetes reads this from the `patchStrategy` / `patchMergeKey` struct tags of
//! `k8s.io/api`; here it is a small static tree holding only the fields whose tags matter
//! when a patch is applied. A field missing from a [`Schema`] is plain: its maps merge
//! recursively and its lists are replaced. `retainKeys` tags are absent on purpose: they only
//! tell a client to emit a `$retainKeys` directive, and the directive is honoured wherever it
//! appears.

/// How strategic merge combines the live value of one field with the patch's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: maps merge recursively, lists are replaced by the patch's list.
    Plain,
    /// `patchStrategy:"replace"`: the patch's value replaces the live one, maps included.
    Replace,
    /// `patchStrategy:"merge"` with `patchMergeKey`: list elements are maps matched by this key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` without a key: a list of scalars merged as an ordered set.
    MergeSet,
}

/// One field of a struct with its strategy and the schema of its value (for a list: of
/// its elements).
#[derive(Debug)]
pub(crate) struct Field {
    name: &'static str,
    pub(crate) strategy: Strategy,
    pub(crate) schema: &'static Schema,
}

/// A struct type: the fields that carry strategic-merge metadata or lead to some.
#[derive(Debug)]
pub(crate) struct Schema {
    fields: &'static [Field],
}

impl Schema {
    /// The metadata of field `name`; unknown fields are plain with no nested metadata.
    pub(crate) fn field(&'static self, name: &str) -> &'static Field {
        self.fields
            .iter()
            .find(|field| field.name == name)
            .unwrap_or(&PLAIN_FIELD)
    }
}

const fn by_key(name: &'static str, key: &'static str, schema: &'static Schema) -> Field {
    Field {
        name,
        strategy: Strategy::MergeByKey(key),
        schema,
    }
}

const fn set(name: &'static str) -> Field {
    Field {
        name,
        strategy: Strategy::MergeSet,
        schema: &PLAIN,
    }
}

const fn nested(name: &'static str, schema: &'static Schema) -> Field {
    Field {
        name,
        strategy: Strategy::Plain,
        schema,
    }
}

static PLAIN: Schema = Schema { fields: &[] };

static PLAIN_FIELD: Field = nested("", &PLAIN);

static OBJECT_META: Schema = Schema {
    fields: &[by_key("ownerReferences", "uid", &PLAIN), set("finalizers")],
};

/// `Container` and `EphemeralContainer` (same tags).
static CONTAINER: Schema = Schema {
    fields: &[
        by_key("ports", "containerPort", &PLAIN),
        by_key("env", "name", &PLAIN),
        by_key("volumeMounts", "mountPath", &PLAIN),
        by_key("volumeDevices", "devicePath", &PLAIN),
    ],
};

static POD_SPEC: Schema = Schema {
    fields: &[
        by_key("volumes", "name", &PLAIN),
        by_key("initContainers", "name", &CONTAINER),
        by_key("containers", "name", &CONTAINER),
        by_key("ephemeralContainers", "name", &CONTAINER),
        by_key("imagePullSecrets", "name", &PLAIN),
        by_key("hostAliases", "ip", &PLAIN),
        by_key("topologySpreadConstraints", "topologyKey", &PLAIN),
        by_key("schedulingGates", "name", &PLAIN),
        by_key("resourceClaims", "name", &PLAIN),
    ],
};

static POD_STATUS: Schema = Schema {
    fields: &[
        by_key("conditions", "type", &PLAIN),
        by_key("podIPs", "ip", &PLAIN),
        by_key("hostIPs", "ip", &PLAIN),
        by_key("resourceClaimStatuses", "name", &PLAIN),
    ],
};

static POD_TEMPLATE_SPEC: Schema = Schema {
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)],
};

/// The status of every kind whose only tagged status field is `conditions` keyed by `type`.
static CONDITIONS_STATUS: Schema = Schema {
    fields: &[by_key("conditions", "type", &PLAIN)],
};

/// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController.
static WORKLOAD_SPEC: Schema = Schema {
    fields: &[nested("template", &POD_TEMPLATE_SPEC)],
};

static WORKLOAD: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &WORKLOAD_SPEC),
        nested("status", &CONDITIONS_STATUS),
    ],
};

/// Only metadata carries tags (ConfigMap, Secret, Endpoints, ...).
static METADATA_ONLY: Schema = Schema {
    fields: &[nested("metadata", &OBJECT_META)],
};

/// Kinds whose tagged fields are metadata and `status.conditions`.
static WITH_CONDITIONS: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("status", &CONDITIONS_STATUS),
    ],
};

static POD: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &POD_SPEC),
        nested("status", &POD_STATUS),
    ],
};

static POD_TEMPLATE: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("template", &POD_TEMPLATE_SPEC),
    ],
};

static CRON_JOB: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested(
            "spec",
            &Schema {
                fields: &[nested(
                    "jobTemplate",
                    &Schema {
                        fields: &[
                            nested("metadata", &OBJECT_META),
                            nested("spec", &WORKLOAD_SPEC),
                        ],
                    },
                )],
            },
        ),
    ],
};

static SERVICE: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested(
            "spec",
            &Schema {
                fields: &[by_key("ports", "port", &PLAIN)],
            },
        ),
        nested("status", &CONDITIONS_STATUS),
    ],
};

static NODE: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested(
            "spec",
            &Schema {
                fields: &[set("podCIDRs")],
            },
        ),
        nested(
            "status",
            &Schema {
                fields: &[
                    by_key("conditions", "type", &PLAIN),
                    by_key("addresses", "type", &PLAIN),
                ],
            },
        ),
    ],
};

static SERVICE_ACCOUNT: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        by_key("secrets", "name", &PLAIN),
    ],
};

static POD_DISRUPTION_BUDGET: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested(
            "spec",
            &Schema {
                fields: &[Field {
                    name: "selector",
                    strategy: Strategy::Replace,
                    schema: &PLAIN,
                }],
            },
        ),
        nested("status", &CONDITIONS_STATUS),
    ],
};

/// Every kind strategic merge patch is accepted for, with its schema. Kinds are matched
/// by name alone: drover serves one version of each built-in kind.
static KINDS: &[(&str, &Schema)] = &[
    // core/v1
    ("Pod", &POD),
    ("PodTemplate", &POD_TEMPLATE),
    ("ReplicationController", &WORKLOAD),
    ("Service", &SERVICE),
    ("Endpoints", &METADATA_ONLY),
    ("ConfigMap", &METADATA_ONLY),
    ("Secret", &METADATA_ONLY),
    ("Node", &NODE),
    ("Namespace", &WITH_CONDITIONS),
    ("Event", &METADATA_ONLY),
    ("PersistentVolume", &METADATA_ONLY),
    ("PersistentVolumeClaim", &WITH_CONDITIONS),
    ("ServiceAccount", &SERVICE_ACCOUNT),
    ("ResourceQuota", &METADATA_ONLY),
    ("LimitRange", &METADATA_ONLY),
    // apps/v1
    ("Deployment", &WORKLOAD),
    ("ReplicaSet", &WORKLOAD),
    ("StatefulSet", &WORKLOAD),
    ("DaemonSet", &WORKLOAD),
    ("ControllerRevision", &METADATA_ONLY),
    // batch/v1
    ("Job", &WORKLOAD),
    ("CronJob", &CRON_JOB),
    // autoscaling/v2, discovery.k8s.io/v1, policy/v1, scheduling.k8s.io/v1, coordination.k8s.io/v1
    ("HorizontalPodAutoscaler", &WITH_CONDITIONS),
    ("EndpointSlice", &METADATA_ONLY),
    ("PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
    ("PriorityClass", &METADATA_ONLY),
    ("Lease", &METADATA_ONLY),
    ("StorageClass", &METADATA_ONLY),
];

/// The schema of a built-in kind, or `None` for kinds without strategic-merge metadata.
pub(crate) fn for_kind(kind: &str) -> Option<&'static Schema> {
    KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .map(|(_, schema)| *schema)
}

/// The schema of kinds without metadata: every field plain.
pub(crate) fn plain() -> &'static Schema {
    &PLAIN
}

/// Names of the kinds [`for_kind`] knows, in table order.
pub(crate) fn kinds() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|(name, _)| *name)
}
