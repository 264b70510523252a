//! A minimal OTLP/gRPC trace collector.
//!
//! - For the tracing-cost benchmark it only counts, walking the protobuf
//!   wire format rather than decoding: it prints `listening on <addr>`, then
//!   answers each line on stdin with the number of spans received so far.
//! - With `--print`, it also prints every span as it arrives, one line each
//!   (trace id, span id, parent, name, duration, attributes): a way to see
//!   the gateway's traces in a terminal where no Jaeger runs.
//!
//! ```sh
//! cargo run --release -p lienthong --example otlp_sink -- --listen 127.0.0.1:4317 --print
//! LIENTHONG_TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:4317 cargo run -p lienthong
//! ```

#[path = "common/help.rs"]
mod help;

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

struct Sink {
    received: Arc<AtomicU64>,
    print: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn line(span: &Span) -> String {
    let attributes: Vec<String> = span
        .attributes
        .iter()
        .map(|a| {
            let value = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            format!("{}={value}", a.key)
        })
        .collect();
    let parent = if span.parent_span_id.is_empty() { "-".to_owned() } else { hex(&span.parent_span_id) };
    let ms = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e6;
    format!(
        "trace {} span {} parent {parent} {:?} {ms:.3} ms {}",
        hex(&span.trace_id),
        hex(&span.span_id),
        span.name,
        attributes.join(" ")
    )
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
        let mut n = 0;
        for span in spans {
            n += 1;
            if self.print {
                println!("{}", line(span));
            }
        }
        self.received.fetch_add(n, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An export request, decoded only as far as counting its spans: the
/// collector's own cost stays small beside the gateway's (a real collector
/// runs on other machines).
#[derive(Debug, Default, Clone, Copy)]
struct SpanCount(u64);

/// The fields of a protobuf message: (field number, payload of a
/// length-delimited field), skipping the others.
fn delimited(mut b: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    std::iter::from_fn(move || {
        loop {
            let key = varint(&mut b)?;
            let skip = match key & 7 {
                0 => {
                    varint(&mut b)?;
                    continue;
                }
                1 => 8,
                5 => 4,
                2 => {
                    let len = usize::try_from(varint(&mut b)?).ok()?;
                    let (payload, rest) = (b.get(..len)?, b.get(len..)?);
                    b = rest;
                    return Some((key >> 3, payload));
                }
                _ => return None,
            };
            b = b.get(skip..)?;
        }
    })
}

impl prost::Message for SpanCount {
    fn encode_raw(&self, _: &mut impl prost::bytes::BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag != 1 || wire_type != prost::encoding::WireType::LengthDelimited {
            return prost::encoding::skip_field(wire_type, tag, buf, ctx);
        }
        // ResourceSpans { 2: ScopeSpans { 2: Span } }
        let mut resource = prost::bytes::Bytes::new();
        prost::encoding::bytes::merge(wire_type, &mut resource, buf, ctx)?;
        for (field, scope) in delimited(&resource) {
            if field == 2 {
                self.0 += delimited(scope).filter(|(f, _)| *f == 2).count() as u64;
            }
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        self.0 = 0;
    }
}

/// `TraceService/Export`, counting only.
#[derive(Clone)]
struct Counting(Arc<AtomicU64>);

impl tonic::server::NamedService for Counting {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tower::Service<http::Request<tonic::body::Body>> for Counting {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let received = self.0.clone();
        let export = tower::service_fn(move |r: tonic::Request<SpanCount>| {
            received.fetch_add(r.get_ref().0, Ordering::Relaxed);
            std::future::ready(Ok::<_, tonic::Status>(tonic::Response::new(ExportTraceServiceResponse::default())))
        });
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<ExportTraceServiceResponse, SpanCount>::default();
            let mut grpc = tonic::server::Grpc::new(codec).max_decoding_message_size(64 << 20);
            Ok(grpc.unary(export, request).await)
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if help::asked(include_str!("otlp_sink.rs")) {
        return Ok(());
    }
    let args: Vec<String> = std::env::args().collect();
    let listen = args.iter().position(|a| a == "--listen").and_then(|i| args.get(i + 1)).map_or("127.0.0.1:0", |s| s);
    let print = args.iter().any(|a| a == "--print");
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let received = Arc::new(AtomicU64::new(0));
    let counted = received.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
            println!("{}", counted.load(Ordering::Relaxed));
        }
    });
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut server = tonic::transport::Server::builder();
    if print {
        let sink = TraceServiceServer::new(Sink { received, print }).max_decoding_message_size(64 << 20);
        server.add_service(sink).serve_with_incoming(incoming).await?;
    } else {
        server.add_service(Counting(received)).serve_with_incoming(incoming).await?;
    }
    Ok(())
}
