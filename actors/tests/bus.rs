//! Garbage on drover subjects is logged, counted and dropped; the subscriber keeps
//! delivering well-formed messages. Real nats-server from the shared harness.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bus_schema::envelope::{self, Meta};
use bus_schema::subjects;
use drover_actors::bus::TypedSubscriber;
use drover_testkit::TestNats;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_on_drover_subjects_are_dropped_without_panic() {
    let nats = TestNats::start().await;
    let client = nats.client().await;
    let mut sub = TypedSubscriber::<Event>::subscribe(&client, subjects::EVENTS_ALL.to_string())
        .await
        .unwrap();
    let dropped = sub.dropped_counter();
    client.flush().await.unwrap();

    let subject = subjects::event(Some("default"), "Pod", "web-1");
    let mut seed = 0x9E3779B97F4A7C15u64;
    let mut junk_sent = 0;
    for i in 0..200usize {
        let len = (i * 31) % 700;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        match i % 4 {
            // No headers at all.
            0 => client.publish(subject.clone(), bytes.into()).await.unwrap(),
            // Valid headers, garbage body.
            1 => client
                .publish_with_headers(
                    subject.clone(),
                    envelope::headers(&Meta::default()).unwrap(),
                    bytes.into(),
                )
                .await
                .unwrap(),
            // A schema version from the future.
            2 => {
                let mut h = envelope::headers(&Meta::default()).unwrap();
                h.insert(envelope::HEADER_SCHEMA, "999");
                client
                    .publish_with_headers(subject.clone(), h, bytes.into())
                    .await
                    .unwrap()
            }
            // Well-formed MessagePack of the wrong shape.
            _ => client
                .publish_with_headers(
                    subject.clone(),
                    envelope::headers(&Meta::default()).unwrap(),
                    envelope::encode_body(&vec![1u32, 2, 3]).unwrap(),
                )
                .await
                .unwrap(),
        }
        junk_sent += 1;
    }
    let event = Event {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("web-1.1".into()),
            ..Default::default()
        },
        reason: Some("Started".into()),
        ..Default::default()
    };
    let meta = Meta {
        sender: "test".into(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let (h, body) = envelope::encode(&event, &meta).unwrap();
    client
        .publish_with_headers(subject.clone(), h, body)
        .await
        .unwrap();
    client.flush().await.unwrap();

    let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("valid message delivered")
        .unwrap();
    assert_eq!(got.body.reason.as_deref(), Some("Started"));
    assert_eq!(got.meta, meta);
    assert_eq!(got.subject, subject);
    assert_eq!(dropped.load(Ordering::Relaxed), junk_sent);
}
