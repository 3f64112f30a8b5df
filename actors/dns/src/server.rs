//! The hickory request handler: one question in, the index's answer out as a message.

use std::sync::{Arc, RwLock};

use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use crate::forward::Forwarder;
use crate::index::{Answer, Data, Index, QType, Rec, TTL};

/// SOA timers, as CoreDNS's kubernetes plugin writes them.
const REFRESH: i32 = 7200;
const RETRY: i32 = 1800;
const EXPIRE: i32 = 86400;

/// Answers from the shared index; what the index does not hold goes to the forwarder,
/// when there is one.
pub(crate) struct Handler {
    index: Arc<RwLock<Index>>,
    forwarder: Option<Forwarder>,
}

impl Handler {
    pub(crate) fn new(index: Arc<RwLock<Index>>, forwarder: Option<Forwarder>) -> Handler {
        Handler { index, forwarder }
    }
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::CNAME => QType::Cname,
        RecordType::SOA => QType::Soa,
        RecordType::PTR => QType::Ptr,
        _ => QType::Other,
    }
}

/// Turns an index record into hickory's; `None` for a name hickory cannot encode (an
/// ExternalName that is no domain name), which is then left out rather than failing.
fn record(rec: &Rec) -> Option<Record> {
    let name = Name::from_ascii(&rec.name).ok()?;
    let data = match &rec.data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Data::Cname(target) => RData::CNAME(CNAME(Name::from_ascii(target).ok()?)),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(
            *priority,
            *weight,
            *port,
            Name::from_ascii(target).ok()?,
        )),
        Data::Ptr(target) => RData::PTR(PTR(Name::from_ascii(target).ok()?)),
        Data::Soa(soa) => RData::SOA(SOA::new(
            Name::from_ascii(&soa.mname).ok()?,
            Name::from_ascii(&soa.rname).ok()?,
            soa.serial,
            REFRESH,
            RETRY,
            EXPIRE,
            TTL,
        )),
    };
    Some(Record::from_rdata(name, TTL, data))
}

fn records(recs: &[Rec]) -> Vec<Record> {
    recs.iter().filter_map(record).collect()
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let code = if request.message_type() != MessageType::Query {
            Some(ResponseCode::FormErr)
        } else if request.op_code() != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        let info = match (code, request.request_info()) {
            (None, Ok(info)) => info,
            (code, _) => {
                let code = code.unwrap_or(ResponseCode::FormErr);
                let msg = builder.error_msg(request.header(), code);
                return send(&mut response_handle, msg, request.header(), code).await;
            }
        };
        let query = info.query.original();
        let (answer, soa) = {
            let ix = self.index.read().unwrap_or_else(|p| p.into_inner());
            (
                ix.answer(&query.name().to_ascii(), qtype(query.query_type())),
                ix.soa(),
            )
        };
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(false);
        let (answers, additionals, authority) = match answer {
            Answer::Refused if self.forwarder.is_some() => {
                let forwarder = self.forwarder.as_ref().expect("checked above");
                let reply = forwarder
                    .forward(query, request.header().recursion_desired())
                    .await;
                let Some(reply) = reply else {
                    let code = ResponseCode::ServFail;
                    let msg = builder.error_msg(request.header(), code);
                    return send(&mut response_handle, msg, request.header(), code).await;
                };
                header.set_response_code(reply.response_code());
                header.set_authoritative(reply.authoritative());
                header.set_recursion_available(reply.recursion_available());
                let msg = builder.build(
                    header,
                    reply.answers().iter(),
                    reply.name_servers().iter(),
                    std::iter::empty(),
                    reply.additionals().iter(),
                );
                let code = header.response_code();
                return send(&mut response_handle, msg, request.header(), code).await;
            }
            Answer::Refused => {
                let code = ResponseCode::Refused;
                let msg = builder.error_msg(request.header(), code);
                return send(&mut response_handle, msg, request.header(), code).await;
            }
            Answer::NxDomain => {
                header.set_response_code(ResponseCode::NXDomain);
                (Vec::new(), Vec::new(), records(&[soa]))
            }
            Answer::Records {
                answers,
                additionals,
            } => {
                let authority = if answers.is_empty() {
                    records(&[soa])
                } else {
                    Vec::new()
                };
                (records(&answers), records(&additionals), authority)
            }
        };
        header.set_authoritative(true);
        let msg = builder.build(
            header,
            answers.iter(),
            std::iter::empty(),
            authority.iter(),
            additionals.iter(),
        );
        let code = header.response_code();
        send(&mut response_handle, msg, request.header(), code).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    msg: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Header,
    code: ResponseCode,
) -> ResponseInfo {
    match handle.send_response(msg).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(message = "dns response not sent", %error);
            let mut header = Header::response_from_request(request);
            header.set_response_code(code);
            header.into()
        }
    }
}
