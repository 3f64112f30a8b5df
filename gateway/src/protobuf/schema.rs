//! Field numbers of the Kubernetes messages drover decodes from protobuf bodies, from
//! Kubernetes' `generated.proto` wire format (a message's field numbers are part of the
//! API's compatibility promise, so they never change). Only what kubectl's typed
//! generators send is here; see the module docs of [`super`] for what happens to the rest.

/// What one field holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    /// `string`.
    Str,
    /// `bytes`, rendered base64 as in Kubernetes' JSON.
    Bytes,
    /// `bool`.
    Bool,
    /// `int32` / `int64` (varint).
    Int,
    /// A nested message.
    Msg(&'static Msg),
    /// `meta.v1.Time` (RFC 3339, seconds).
    Time,
    /// `intstr.IntOrString`.
    IntOrString,
    /// `resource.Quantity`.
    Quantity,
    /// A message holding JSON in field 1 (`RawExtension`, `FieldsV1`).
    RawJson,
    /// Read and thrown away (an object's `status` on a write).
    Skip,
}

/// How many values a field has.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Card {
    /// At most one.
    One,
    /// A JSON array.
    Many,
    /// `map<string, Ty>` (repeated entries with key 1 and value 2).
    Map,
}

/// One field.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) num: u32,
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    pub(crate) card: Card,
}

/// One message.
#[derive(Debug)]
pub(crate) struct Msg {
    pub(crate) name: &'static str,
    pub(crate) fields: &'static [Field],
}

impl Msg {
    pub(crate) fn field(&self, num: u32) -> Option<&Field> {
        self.fields.iter().find(|f| f.num == num)
    }
}

const fn one(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        card: Card::One,
    }
}
const fn many(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        card: Card::Many,
    }
}
const fn map(num: u32, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        card: Card::Map,
    }
}

use Ty::{Bool, Bytes, Int, IntOrString, Msg as M, Quantity, RawJson, Skip, Str, Time};

pub(crate) static OBJECT_META: Msg = Msg {
    name: "ObjectMeta",
    fields: &[
        one(1, "name", Str),
        one(2, "generateName", Str),
        one(3, "namespace", Str),
        one(4, "selfLink", Str),
        one(5, "uid", Str),
        one(6, "resourceVersion", Str),
        one(7, "generation", Int),
        one(8, "creationTimestamp", Time),
        one(9, "deletionTimestamp", Time),
        one(10, "deletionGracePeriodSeconds", Int),
        map(11, "labels", Str),
        map(12, "annotations", Str),
        many(13, "ownerReferences", M(&OWNER_REFERENCE)),
        many(14, "finalizers", Str),
        many(17, "managedFields", M(&MANAGED_FIELDS_ENTRY)),
    ],
};

static OWNER_REFERENCE: Msg = Msg {
    name: "OwnerReference",
    fields: &[
        one(1, "kind", Str),
        one(3, "name", Str),
        one(4, "uid", Str),
        one(5, "apiVersion", Str),
        one(6, "controller", Bool),
        one(7, "blockOwnerDeletion", Bool),
    ],
};

static MANAGED_FIELDS_ENTRY: Msg = Msg {
    name: "ManagedFieldsEntry",
    fields: &[
        one(1, "manager", Str),
        one(2, "operation", Str),
        one(3, "apiVersion", Str),
        one(4, "time", Time),
        one(6, "fieldsType", Str),
        one(7, "fieldsV1", RawJson),
        one(8, "subresource", Str),
    ],
};

static LABEL_SELECTOR: Msg = Msg {
    name: "LabelSelector",
    fields: &[
        map(1, "matchLabels", Str),
        many(2, "matchExpressions", M(&LABEL_SELECTOR_REQUIREMENT)),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Msg = Msg {
    name: "LabelSelectorRequirement",
    fields: &[
        one(1, "key", Str),
        one(2, "operator", Str),
        many(3, "values", Str),
    ],
};

static NAMESPACE_SPEC: Msg = Msg {
    name: "NamespaceSpec",
    fields: &[many(1, "finalizers", Str)],
};

static LOCAL_OBJECT_REFERENCE: Msg = Msg {
    name: "LocalObjectReference",
    fields: &[one(1, "name", Str)],
};

static OBJECT_REFERENCE: Msg = Msg {
    name: "ObjectReference",
    fields: &[
        one(1, "kind", Str),
        one(2, "namespace", Str),
        one(3, "name", Str),
        one(4, "uid", Str),
        one(5, "apiVersion", Str),
        one(6, "resourceVersion", Str),
        one(7, "fieldPath", Str),
    ],
};

static SERVICE_SPEC: Msg = Msg {
    name: "ServiceSpec",
    fields: &[
        many(1, "ports", M(&SERVICE_PORT)),
        map(2, "selector", Str),
        one(3, "clusterIP", Str),
        one(4, "type", Str),
        many(5, "externalIPs", Str),
        one(7, "sessionAffinity", Str),
        one(8, "loadBalancerIP", Str),
        many(9, "loadBalancerSourceRanges", Str),
        one(10, "externalName", Str),
        one(11, "externalTrafficPolicy", Str),
        one(12, "healthCheckNodePort", Int),
        one(13, "publishNotReadyAddresses", Bool),
        one(17, "ipFamilyPolicy", Str),
        many(18, "clusterIPs", Str),
        many(19, "ipFamilies", Str),
        one(20, "allocateLoadBalancerNodePorts", Bool),
        one(21, "loadBalancerClass", Str),
        one(22, "internalTrafficPolicy", Str),
        one(23, "trafficDistribution", Str),
    ],
};

static SERVICE_PORT: Msg = Msg {
    name: "ServicePort",
    fields: &[
        one(1, "name", Str),
        one(2, "protocol", Str),
        one(3, "port", Int),
        one(4, "targetPort", IntOrString),
        one(5, "nodePort", Int),
        one(6, "appProtocol", Str),
    ],
};

static POD_TEMPLATE_SPEC: Msg = Msg {
    name: "PodTemplateSpec",
    fields: &[
        one(1, "metadata", M(&OBJECT_META)),
        one(2, "spec", M(&POD_SPEC)),
    ],
};

static POD_SPEC: Msg = Msg {
    name: "PodSpec",
    fields: &[
        many(2, "containers", M(&CONTAINER)),
        one(3, "restartPolicy", Str),
        one(4, "terminationGracePeriodSeconds", Int),
        one(5, "activeDeadlineSeconds", Int),
        one(6, "dnsPolicy", Str),
        map(7, "nodeSelector", Str),
        one(8, "serviceAccountName", Str),
        one(9, "serviceAccount", Str),
        one(10, "nodeName", Str),
        one(11, "hostNetwork", Bool),
        one(12, "hostPID", Bool),
        one(13, "hostIPC", Bool),
        many(15, "imagePullSecrets", M(&LOCAL_OBJECT_REFERENCE)),
        one(16, "hostname", Str),
        one(17, "subdomain", Str),
        one(19, "schedulerName", Str),
        many(20, "initContainers", M(&CONTAINER)),
        one(21, "automountServiceAccountToken", Bool),
        one(24, "priorityClassName", Str),
        one(25, "priority", Int),
        one(27, "shareProcessNamespace", Bool),
        one(29, "runtimeClassName", Str),
        one(30, "enableServiceLinks", Bool),
        one(31, "preemptionPolicy", Str),
        map(32, "overhead", Quantity),
        one(35, "setHostnameAsFQDN", Bool),
        one(37, "hostUsers", Bool),
        one(41, "hostnameOverride", Str),
    ],
};

static CONTAINER: Msg = Msg {
    name: "Container",
    fields: &[
        one(1, "name", Str),
        one(2, "image", Str),
        many(3, "command", Str),
        many(4, "args", Str),
        one(5, "workingDir", Str),
        many(6, "ports", M(&CONTAINER_PORT)),
        many(7, "env", M(&ENV_VAR)),
        one(8, "resources", M(&RESOURCE_REQUIREMENTS)),
        one(13, "terminationMessagePath", Str),
        one(14, "imagePullPolicy", Str),
        one(16, "stdin", Bool),
        one(17, "stdinOnce", Bool),
        one(18, "tty", Bool),
        one(20, "terminationMessagePolicy", Str),
        one(24, "restartPolicy", Str),
    ],
};

static CONTAINER_PORT: Msg = Msg {
    name: "ContainerPort",
    fields: &[
        one(1, "name", Str),
        one(2, "hostPort", Int),
        one(3, "containerPort", Int),
        one(4, "protocol", Str),
        one(5, "hostIP", Str),
    ],
};

static ENV_VAR: Msg = Msg {
    name: "EnvVar",
    fields: &[one(1, "name", Str), one(2, "value", Str)],
};

static RESOURCE_REQUIREMENTS: Msg = Msg {
    name: "ResourceRequirements",
    fields: &[map(1, "limits", Quantity), map(2, "requests", Quantity)],
};

static DEPLOYMENT_SPEC: Msg = Msg {
    name: "DeploymentSpec",
    fields: &[
        one(1, "replicas", Int),
        one(2, "selector", M(&LABEL_SELECTOR)),
        one(3, "template", M(&POD_TEMPLATE_SPEC)),
        one(4, "strategy", M(&DEPLOYMENT_STRATEGY)),
        one(5, "minReadySeconds", Int),
        one(6, "revisionHistoryLimit", Int),
        one(7, "paused", Bool),
        one(9, "progressDeadlineSeconds", Int),
    ],
};

static DEPLOYMENT_STRATEGY: Msg = Msg {
    name: "DeploymentStrategy",
    fields: &[
        one(1, "type", Str),
        one(2, "rollingUpdate", M(&ROLLING_UPDATE_DEPLOYMENT)),
    ],
};

static ROLLING_UPDATE_DEPLOYMENT: Msg = Msg {
    name: "RollingUpdateDeployment",
    fields: &[
        one(1, "maxUnavailable", IntOrString),
        one(2, "maxSurge", IntOrString),
    ],
};

static JOB_SPEC: Msg = Msg {
    name: "JobSpec",
    fields: &[
        one(1, "parallelism", Int),
        one(2, "completions", Int),
        one(3, "activeDeadlineSeconds", Int),
        one(4, "selector", M(&LABEL_SELECTOR)),
        one(5, "manualSelector", Bool),
        one(6, "template", M(&POD_TEMPLATE_SPEC)),
        one(7, "backoffLimit", Int),
        one(8, "ttlSecondsAfterFinished", Int),
        one(9, "completionMode", Str),
        one(10, "suspend", Bool),
        one(12, "backoffLimitPerIndex", Int),
        one(13, "maxFailedIndexes", Int),
        one(14, "podReplacementPolicy", Str),
        one(15, "managedBy", Str),
    ],
};

static JOB_TEMPLATE_SPEC: Msg = Msg {
    name: "JobTemplateSpec",
    fields: &[
        one(1, "metadata", M(&OBJECT_META)),
        one(2, "spec", M(&JOB_SPEC)),
    ],
};

static CRON_JOB_SPEC: Msg = Msg {
    name: "CronJobSpec",
    fields: &[
        one(1, "schedule", Str),
        one(2, "startingDeadlineSeconds", Int),
        one(3, "concurrencyPolicy", Str),
        one(4, "suspend", Bool),
        one(5, "jobTemplate", M(&JOB_TEMPLATE_SPEC)),
        one(6, "successfulJobsHistoryLimit", Int),
        one(7, "failedJobsHistoryLimit", Int),
        one(8, "timeZone", Str),
    ],
};

static CROSS_VERSION_OBJECT_REFERENCE: Msg = Msg {
    name: "CrossVersionObjectReference",
    fields: &[
        one(1, "kind", Str),
        one(2, "name", Str),
        one(3, "apiVersion", Str),
    ],
};

/// autoscaling/v1 (`kubectl autoscale`).
static HPA_V1_SPEC: Msg = Msg {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        one(1, "scaleTargetRef", M(&CROSS_VERSION_OBJECT_REFERENCE)),
        one(2, "minReplicas", Int),
        one(3, "maxReplicas", Int),
        one(4, "targetCPUUtilizationPercentage", Int),
    ],
};

/// A top-level kind: metadata 1, then its own fields; `status` (3 where present) is
/// dropped (writes to the main resource never set it).
macro_rules! kind {
    ($ident:ident, $name:literal, [$($field:expr),* $(,)?]) => {
        static $ident: Msg = Msg { name: $name, fields: &[one(1, "metadata", M(&OBJECT_META)), $($field),*] };
    };
}

kind!(
    NAMESPACE,
    "Namespace",
    [one(2, "spec", M(&NAMESPACE_SPEC)), one(3, "status", Skip)]
);
kind!(
    CONFIG_MAP,
    "ConfigMap",
    [
        map(2, "data", Str),
        map(3, "binaryData", Bytes),
        one(4, "immutable", Bool)
    ]
);
kind!(
    SECRET,
    "Secret",
    [
        map(2, "data", Bytes),
        one(3, "type", Str),
        map(4, "stringData", Str),
        one(5, "immutable", Bool)
    ]
);
kind!(
    SERVICE_ACCOUNT,
    "ServiceAccount",
    [
        many(2, "secrets", M(&OBJECT_REFERENCE)),
        many(3, "imagePullSecrets", M(&LOCAL_OBJECT_REFERENCE)),
        one(4, "automountServiceAccountToken", Bool)
    ]
);
kind!(
    SERVICE,
    "Service",
    [one(2, "spec", M(&SERVICE_SPEC)), one(3, "status", Skip)]
);
kind!(
    POD,
    "Pod",
    [one(2, "spec", M(&POD_SPEC)), one(3, "status", Skip)]
);
kind!(
    DEPLOYMENT,
    "Deployment",
    [one(2, "spec", M(&DEPLOYMENT_SPEC)), one(3, "status", Skip)]
);
kind!(
    JOB,
    "Job",
    [one(2, "spec", M(&JOB_SPEC)), one(3, "status", Skip)]
);
kind!(
    HPA_V1,
    "HorizontalPodAutoscaler",
    [one(2, "spec", M(&HPA_V1_SPEC)), one(3, "status", Skip)]
);
kind!(
    CRON_JOB,
    "CronJob",
    [one(2, "spec", M(&CRON_JOB_SPEC)), one(3, "status", Skip)]
);

static PRECONDITIONS: Msg = Msg {
    name: "Preconditions",
    fields: &[one(1, "uid", Str), one(2, "resourceVersion", Str)],
};

static DELETE_OPTIONS: Msg = Msg {
    name: "DeleteOptions",
    fields: &[
        one(1, "gracePeriodSeconds", Int),
        one(2, "preconditions", M(&PRECONDITIONS)),
        one(3, "orphanDependents", Bool),
        one(4, "propagationPolicy", Str),
        many(5, "dryRun", Str),
    ],
};

/// The `runtime.Unknown` envelope every protobuf body arrives in.
pub(crate) static UNKNOWN: Msg = Msg {
    name: "Unknown",
    fields: &[
        one(1, "typeMeta", M(&TYPE_META)),
        one(2, "raw", Bytes),
        one(3, "contentEncoding", Str),
        one(4, "contentType", Str),
    ],
};

static TYPE_META: Msg = Msg {
    name: "TypeMeta",
    fields: &[one(1, "apiVersion", Str), one(2, "kind", Str)],
};

/// The message of a top-level object by `apiVersion` and `kind`.
pub(crate) fn kind(api_version: &str, kind: &str) -> Option<&'static Msg> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "Service") => &SERVICE,
        ("v1", "Pod") => &POD,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("batch/v1", "Job") => &JOB,
        ("batch/v1", "CronJob") => &CRON_JOB,
        ("autoscaling/v1", "HorizontalPodAutoscaler") => &HPA_V1,
        (_, "DeleteOptions") => &DELETE_OPTIONS,
        _ => return None,
    })
}
