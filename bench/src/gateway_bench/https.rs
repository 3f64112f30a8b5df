//! The bench's HTTPS client for the gateway: hyper's HTTP/1.1 keep-alive connection pool
//! over rustls (ring), trusting only the CA the gateway generated, with the admin bearer
//! token. Every request of the concurrent phases reuses a pooled connection; a watch
//! holds its own connection for as long as it is open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::Stream;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::backend::EventStream;

/// How long an idle pooled connection is kept; longer than any pause between phases, so
/// no phase pays for TLS handshakes another phase already paid for.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Most of an error body quoted in an error message.
const ERROR_BODY_CHARS: usize = 300;

/// A pooled HTTPS client for one gateway. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct ApiClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: Arc<str>,
    authorization: Arc<str>,
}

impl ApiClient {
    /// A client for the gateway listening on `addr`, trusting `ca_pem`, sending `token`.
    pub fn new(addr: SocketAddr, ca_pem: &str, token: &str) -> Result<ApiClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("reading the gateway's CA certificate")?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        // kubectl and client-go (Go's net/http) disable Nagle's algorithm too.
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Ok(ApiClient {
            client,
            base: format!("https://127.0.0.1:{}", addr.port()).into(),
            authorization: format!("Bearer {token}").into(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, &*self.authorization)
            .header(header::ACCEPT, "application/json");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Full::new(body))?;
        Ok(self.client.request(request).await?)
    }

    /// Sends a request and decodes its JSON answer; fails unless the status is in `ok`.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
        ok: &[StatusCode],
    ) -> Result<(StatusCode, Value)> {
        let response = self
            .send(method.clone(), path, content_type, body)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if !ok.contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            let quoted: String = text.chars().take(ERROR_BODY_CHARS).collect();
            bail!("{method} {path}: {status}: {quoted}");
        }
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: the answer is not JSON"))?;
        Ok((status, value))
    }

    /// Opens a watch (`path` carries `watch=true`) and returns once the gateway has
    /// answered 200 with its response head, i.e. the watch is registered. The stream
    /// yields each event's object, decoded; it fails on an ERROR event.
    pub async fn watch(&self, path: &str) -> Result<EventStream> {
        let response = self
            .send(Method::GET, path, None, Bytes::new())
            .await
            .with_context(|| format!("GET {path}"))?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(Box::pin(watch_objects(response.into_body())))
    }
}

/// The objects of a watch body: newline-delimited JSON events, split across chunks at
/// arbitrary points.
fn watch_objects(body: Incoming) -> impl Stream<Item = Result<Value>> + Send {
    let state = (body, Vec::<u8>::new(), false);
    futures::stream::unfold(state, |(mut body, mut buf, ended)| async move {
        if ended {
            return None;
        }
        loop {
            if let Some(newline) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=newline).collect();
                match decode_event(&line[..newline]) {
                    Ok(None) => continue,
                    Ok(Some(obj)) => return Some((Ok(obj), (body, buf, false))),
                    Err(e) => return Some((Err(e), (body, buf, true))),
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some((Err(e.into()), (body, buf, true))),
                None => return None,
            }
        }
    })
}

/// One watch line: the object of an ADDED, MODIFIED or DELETED event; `None` for a
/// bookmark or a blank line; an error for an ERROR event.
pub fn decode_event(line: &[u8]) -> Result<Option<Value>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut event: Value = serde_json::from_slice(line).context("a watch line is not JSON")?;
    match event.get("type").and_then(Value::as_str) {
        Some("ADDED" | "MODIFIED" | "DELETED") => Ok(Some(event["object"].take())),
        Some("BOOKMARK") => Ok(None),
        Some("ERROR") => bail!("the watch ended with an error: {}", event["object"]),
        other => bail!("unexpected watch event type {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines() {
        let added = br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#;
        assert_eq!(
            decode_event(added).unwrap(),
            Some(serde_json::json!({"metadata": {"name": "a"}}))
        );
        assert_eq!(decode_event(b"  ").unwrap(), None);
        assert_eq!(
            decode_event(br#"{"type":"BOOKMARK","object":{}}"#).unwrap(),
            None
        );
        assert!(decode_event(br#"{"type":"ERROR","object":{"code":410}}"#).is_err());
    }
}
