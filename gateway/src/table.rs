//! Server-side printing: turns objects of one kind into a `meta.k8s.io/v1` `Table`, the
//! answer to `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` that `kubectl get`
//! renders.
//!
//! The columns and cell values follow the Kubernetes printers
//! (`pkg/printers/internalversion`), so `kubectl get pods` against drover reads like it does
//! against any cluster. Like the API server, every row carries the `-o wide` cells too;
//! kubectl hides the columns with `priority > 0` unless asked for them. Kinds without a
//! printer get what Kubernetes gives them: `Name`/`Age` for custom resources (drover's own
//! kinds among them), `Name`/`Created At` for LimitRange.
//!
//! Everything here is a pure function of its inputs. The clock is a parameter (`now`), so
//! ages are deterministic in tests, and objects are plain JSON in the wire shape, so a
//! missing or wrongly typed field degrades to `<none>`, `<unknown>` or `0` as kubectl shows
//! it, never to a panic or an error.

mod cluster;
mod config;
mod duration;
mod fields;
mod network;
mod pod;
mod selector;
mod storage;
mod workloads;

#[cfg(test)]
mod tests;

use bus_schema::KindInfo;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

pub use duration::human_duration;

/// `apiVersion` of the `Table` and of the `PartialObjectMetadata` rows it embeds.
const META_API_VERSION: &str = "meta.k8s.io/v1";

/// What each row's `object` holds: the `includeObject` parameter of `meta.k8s.io/v1`
/// `TableOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No `object` at all: the cheapest answer, for clients that only print.
    None,
    /// A `PartialObjectMetadata` carrying the object's `metadata`; what kubectl asks for.
    #[default]
    Metadata,
    /// The whole object, as a plain GET would return it.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter. Absent means `Metadata`, the Kubernetes
    /// default. An unrecognised value also means `Metadata`: the API server would answer
    /// 406, but a table with metadata is what any client that asks for a table can use.
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Builds a `meta.k8s.io/v1` `Table` for objects of one kind (JSON values in the Kubernetes
/// wire shape), one row per object in the order given.
///
/// `now` is the instant ages are measured from; the caller reads the clock. `list_meta`
/// becomes the table's `metadata` (`resourceVersion`, `continue`, `remainingItemCount`);
/// anything but a JSON object is replaced by `{}`.
pub fn to_table(
    kind: &KindInfo,
    objects: &[Value],
    now: Timestamp,
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let printer = printer_for(kind);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| row(&printer, object, now, include_object))
        .collect();
    let metadata = match list_meta {
        Value::Object(map) => Value::Object(map),
        _ => Value::Object(Map::new()),
    };
    let column_definitions: Vec<Value> = printer
        .columns
        .iter()
        .copied()
        .map(Column::to_json)
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": META_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn row(printer: &Printer, object: &Value, now: Timestamp, include_object: IncludeObject) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array((printer.cells)(object, now)));
    if let Some(conditions) = (printer.conditions)(object) {
        row.insert("conditions".into(), conditions);
    }
    // Kubernetes writes `"object": null` for `None`; leaving the key out means the same to
    // every client and keeps the answer smaller.
    match include_object {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let metadata = match object.get("metadata") {
                Some(Value::Object(map)) => Value::Object(map.clone()),
                _ => Value::Object(Map::new()),
            };
            row.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": META_API_VERSION,
                    "metadata": metadata,
                }),
            );
        }
        IncludeObject::Object => {
            row.insert("object".into(), object.clone());
        }
    }
    Value::Object(row)
}

/// One `TableColumnDefinition`. Names are spelled as the API server spells them (`Up-to-date`,
/// `Port(s)`); kubectl upper-cases them for display.
#[derive(Debug, Clone, Copy)]
struct Column {
    name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `boolean` or `date`.
    ty: &'static str,
    /// `name` marks the column that identifies the object; empty otherwise.
    format: &'static str,
    description: &'static str,
    /// 0 for the default columns, 1 for those kubectl shows only with `-o wide`.
    priority: u8,
}

impl Column {
    const fn string(name: &'static str, description: &'static str) -> Column {
        Column {
            name,
            ty: "string",
            format: "",
            description,
            priority: 0,
        }
    }

    const fn integer(name: &'static str, description: &'static str) -> Column {
        Column {
            ty: "integer",
            ..Column::string(name, description)
        }
    }

    const fn boolean(name: &'static str, description: &'static str) -> Column {
        Column {
            ty: "boolean",
            ..Column::string(name, description)
        }
    }

    const fn date(name: &'static str, description: &'static str) -> Column {
        Column {
            ty: "date",
            ..Column::string(name, description)
        }
    }

    /// The same column, shown only with `-o wide`.
    const fn wide(self) -> Column {
        Column {
            priority: 1,
            ..self
        }
    }

    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// `ObjectMeta.name`'s API documentation, the description Kubernetes gives its Name columns.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s API documentation, the description of Age columns.
const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The identifying column every table starts with (Event's is wide and comes last).
const NAME: Column = Column {
    format: "name",
    ..Column::string("Name", NAME_DESCRIPTION)
};

/// Time since `metadata.creationTimestamp`, as `HumanDuration` prints it.
const AGE: Column = Column::string("Age", CREATION_TIMESTAMP_DESCRIPTION);

/// The wide columns of every pod-template owner.
const CONTAINERS: Column =
    Column::string("Containers", "Names of each container in the template.").wide();
const IMAGES: Column = Column::string(
    "Images",
    "Images referenced by each container in the template.",
)
.wide();

/// Computes one row's cells, one per column, in column order.
type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// Computes a row's `conditions`, if it has any.
type ConditionsFn = fn(&Value) -> Option<Value>;

/// How one kind is printed.
struct Printer {
    columns: &'static [Column],
    cells: CellsFn,
    conditions: ConditionsFn,
}

impl Printer {
    const fn new(columns: &'static [Column], cells: CellsFn) -> Printer {
        Printer {
            columns,
            cells,
            conditions: |_| None,
        }
    }
}

fn printer_for(kind: &KindInfo) -> Printer {
    match (kind.group, kind.kind) {
        ("", "Pod") => Printer {
            conditions: pod::row_conditions,
            ..Printer::new(pod::COLUMNS, pod::cells)
        },
        ("", "Node") => Printer::new(cluster::NODE_COLUMNS, cluster::node_cells),
        ("", "Namespace") => Printer::new(cluster::NAMESPACE_COLUMNS, cluster::namespace_cells),
        ("", "Event") => Printer::new(cluster::EVENT_COLUMNS, cluster::event_cells),
        ("", "Service") => Printer::new(network::SERVICE_COLUMNS, network::service_cells),
        ("", "Endpoints") => Printer::new(network::ENDPOINTS_COLUMNS, network::endpoints_cells),
        ("", "ConfigMap") => Printer::new(config::CONFIG_MAP_COLUMNS, config::config_map_cells),
        ("", "Secret") => Printer::new(config::SECRET_COLUMNS, config::secret_cells),
        ("", "ServiceAccount") => Printer::new(
            config::SERVICE_ACCOUNT_COLUMNS,
            config::service_account_cells,
        ),
        ("", "ResourceQuota") => {
            Printer::new(config::RESOURCE_QUOTA_COLUMNS, config::resource_quota_cells)
        }
        ("", "PersistentVolume") => Printer::new(storage::PV_COLUMNS, storage::pv_cells),
        ("", "PersistentVolumeClaim") => Printer::new(storage::PVC_COLUMNS, storage::pvc_cells),
        ("apps", "Deployment") => {
            Printer::new(workloads::DEPLOYMENT_COLUMNS, workloads::deployment_cells)
        }
        ("apps", "ReplicaSet") => {
            Printer::new(workloads::REPLICA_SET_COLUMNS, workloads::replica_set_cells)
        }
        ("apps", "StatefulSet") => Printer::new(
            workloads::STATEFUL_SET_COLUMNS,
            workloads::stateful_set_cells,
        ),
        ("apps", "DaemonSet") => {
            Printer::new(workloads::DAEMON_SET_COLUMNS, workloads::daemon_set_cells)
        }
        ("apps", "ControllerRevision") => Printer::new(
            workloads::CONTROLLER_REVISION_COLUMNS,
            workloads::controller_revision_cells,
        ),
        ("batch", "Job") => Printer::new(workloads::JOB_COLUMNS, workloads::job_cells),
        ("batch", "CronJob") => {
            Printer::new(workloads::CRON_JOB_COLUMNS, workloads::cron_job_cells)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            Printer::new(workloads::HPA_COLUMNS, workloads::hpa_cells)
        }
        ("policy", "PodDisruptionBudget") => {
            Printer::new(workloads::PDB_COLUMNS, workloads::pdb_cells)
        }
        ("discovery.k8s.io", "EndpointSlice") => Printer::new(
            network::ENDPOINT_SLICE_COLUMNS,
            network::endpoint_slice_cells,
        ),
        ("scheduling.k8s.io", "PriorityClass") => Printer::new(
            cluster::PRIORITY_CLASS_COLUMNS,
            cluster::priority_class_cells,
        ),
        ("coordination.k8s.io", "Lease") => {
            Printer::new(cluster::LEASE_COLUMNS, cluster::lease_cells)
        }
        // Kubernetes has no printer for LimitRange; the API server gives it its default
        // table.
        ("", "LimitRange") => Printer::new(DEFAULT_COLUMNS, default_cells),
        // Everything else is a custom resource to kubectl, drover's own kinds included.
        _ => Printer::new(CUSTOM_RESOURCE_COLUMNS, custom_resource_cells),
    }
}

/// The API server's default table, for built-in kinds without a printer.
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column::date("Created At", CREATION_TIMESTAMP_DESCRIPTION),
];

fn default_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    // The Go zero time is what the API server prints for an object without a timestamp.
    let created = fields::creation_timestamp(object).map_or_else(
        || "0001-01-01T00:00:00Z".to_string(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    vec![fields::name(object).into(), created.into()]
}

/// The table of a custom resource whose definition declares no printer columns: the
/// apiextensions server's default `Age` column, typed `date`.
const CUSTOM_RESOURCE_COLUMNS: &[Column] =
    &[NAME, Column::date("Age", CREATION_TIMESTAMP_DESCRIPTION)];

fn custom_resource_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![fields::name(object).into(), fields::age(object, now).into()]
}
