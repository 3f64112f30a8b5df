use serde_json::json;

use super::*;

/// A tiny protobuf writer for building test bodies the way client-go lays them out.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(mut self, num: u32, mut v: u64) -> W {
        self.key(num, 0);
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn key(&mut self, num: u32, wire: u64) {
        let mut k = (u64::from(num) << 3) | wire;
        loop {
            let byte = (k & 0x7f) as u8;
            k >>= 7;
            if k == 0 {
                self.0.push(byte);
                break;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn bytes(mut self, num: u32, b: &[u8]) -> W {
        self.key(num, 2);
        let len = W::default().varint(1, b.len() as u64).0;
        self.0.extend(&len[1..]);
        self.0.extend(b);
        self
    }
    fn str(self, num: u32, s: &str) -> W {
        self.bytes(num, s.as_bytes())
    }
    fn msg(self, num: u32, m: W) -> W {
        self.bytes(num, &m.0)
    }
    fn entry(self, num: u32, k: &str, v: W) -> W {
        self.msg(num, W::default().str(1, k).bytes(2, &v.0))
    }
}

fn envelope(api_version: &str, kind: &str, object: W) -> Vec<u8> {
    let unknown = W::default()
        .msg(1, W::default().str(1, api_version).str(2, kind))
        .msg(2, object)
        .str(3, "")
        .str(4, "");
    let mut out = MAGIC.to_vec();
    out.extend(unknown.0);
    out
}

/// ObjectMeta as client-go writes it: every string field, zero creationTimestamp.
fn meta(name: &str) -> W {
    W::default()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .varint(7, 0)
        .msg(8, W::default())
        .entry(11, "app", W(b"web".to_vec()))
}

fn decoded(body: &[u8]) -> Value {
    serde_json::from_slice(&decode(body).unwrap()).unwrap()
}

#[test]
fn config_maps_and_secrets() {
    let cm = W::default()
        .msg(1, meta("cfg"))
        .entry(2, "k", W(b"v".to_vec()))
        .entry(2, "empty", W::default())
        .entry(3, "bin", W(vec![0, 1, 2]));
    assert_eq!(
        decoded(&envelope("v1", "ConfigMap", cm)),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "generation": 0, "labels": {"app": "web"}},
            "data": {"k": "v", "empty": ""}, "binaryData": {"bin": "AAEC"}})
    );
    let secret = W::default()
        .msg(1, meta("s"))
        .entry(2, "password", W(b"hunter2".to_vec()))
        .str(3, "Opaque");
    let got = decoded(&envelope("v1", "Secret", secret));
    assert_eq!(got["data"]["password"], "aHVudGVyMg==");
    assert_eq!(got["type"], "Opaque");
}

#[test]
fn deployments_with_templates_ports_and_quantities() {
    let port = W::default().varint(3, 80).str(4, "TCP").varint(2, 0);
    let resources = W::default().entry(1, "cpu", W::default().str(1, "500m"));
    let container = W::default()
        .str(1, "nginx")
        .str(2, "nginx:1.27")
        .msg(6, port)
        .msg(8, resources)
        .str(13, "")
        .varint(16, 0);
    let pod_spec = W::default().msg(2, container).str(3, "").varint(11, 0);
    let template = W::default().msg(1, meta("")).msg(2, pod_spec);
    let selector = W::default().entry(1, "app", W(b"web".to_vec()));
    let rolling = W::default().msg(1, W::default().varint(1, 0).varint(2, 0));
    let strategy = W::default().str(1, "RollingUpdate").msg(2, rolling);
    let spec = W::default()
        .varint(1, 2)
        .msg(2, selector)
        .msg(3, template)
        .msg(4, strategy);
    let d = W::default()
        .msg(1, meta("web"))
        .msg(2, spec)
        .msg(3, W::default().varint(1, 0));
    let got = decoded(&envelope("apps/v1", "Deployment", d));
    assert_eq!(got["spec"]["replicas"], 2);
    assert_eq!(got["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &got["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(c["resources"]["limits"]["cpu"], "500m");
    assert_eq!(
        got["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
        "an explicit 0 stays"
    );
    assert!(got.get("status").is_none());
}

#[test]
fn autoscaling_v1_hpas_as_kubectl_autoscale_sends_them() {
    let target = W::default()
        .str(1, "Deployment")
        .str(2, "web")
        .str(3, "apps/v1");
    let spec = W::default()
        .msg(1, target)
        .varint(2, 1)
        .varint(3, 4)
        .varint(4, 50);
    let hpa = W::default()
        .msg(1, meta("web"))
        .msg(2, spec)
        .msg(3, W::default().varint(1, 0));
    let got = decoded(&envelope("autoscaling/v1", "HorizontalPodAutoscaler", hpa));
    assert_eq!(
        got["spec"],
        json!({"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50})
    );
    assert!(got.get("status").is_none());
}

#[test]
fn services_times_and_negative_ints() {
    let port = W::default()
        .varint(3, 80)
        .msg(4, W::default().varint(1, 0).varint(2, 0).str(3, ""))
        .varint(5, 0);
    let named = W::default()
        .varint(3, 443)
        .msg(4, W::default().varint(1, 1).str(3, "https"));
    let svc = W::default()
        .msg(1, meta("svc").msg(9, W::default().varint(1, 1_700_000_000)))
        .msg(
            2,
            W::default().msg(1, port).msg(1, named).str(4, "ClusterIP"),
        );
    let got = decoded(&envelope("v1", "Service", svc));
    assert!(
        got["spec"]["ports"][0].get("targetPort").is_none(),
        "unset targetPort"
    );
    assert_eq!(got["spec"]["ports"][1]["targetPort"], "https");
    assert_eq!(got["metadata"]["deletionTimestamp"], "2023-11-14T22:13:20Z");
    let pod = W::default()
        .msg(1, meta("p"))
        .msg(2, W::default().varint(25, (-5i64) as u64));
    assert_eq!(decoded(&envelope("v1", "Pod", pod))["spec"]["priority"], -5);
}

#[test]
fn refusals_are_statuses() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"".to_vec(), 400),
        (b"k8s".to_vec(), 400),
        (b"k8s\0\xff\xff\xff".to_vec(), 400),
        (envelope("example.com/v1", "Widget", W::default()), 415),
        // An affinity (PodSpec field 18) is not in the tables: refused, not dropped.
        (
            envelope(
                "v1",
                "Pod",
                W::default().msg(2, W::default().msg(18, W::default().str(1, "x"))),
            ),
            415,
        ),
        // A non-UTF-8 name.
        (
            envelope(
                "v1",
                "Namespace",
                W::default().msg(1, W::default().bytes(1, &[0xff])),
            ),
            400,
        ),
    ];
    for (body, code) in cases {
        assert_eq!(decode(&body).unwrap_err().code, code, "{body:?}");
    }
    // Unknown zero-valued fields are what Go writes for unset values: skipped.
    let ns = W::default()
        .msg(1, meta("n").str(16, ""))
        .msg(2, W::default());
    assert_eq!(
        decoded(&envelope("v1", "Namespace", ns))["metadata"]["name"],
        "n"
    );
}

proptest::proptest! {
    #[test]
    fn random_bodies_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let mut body = MAGIC.to_vec();
        body.extend(tail.iter().copied());
        let _ = decode(&body);
        let _ = decode(&envelope("apps/v1", "Deployment", W(tail)));
    }
}
