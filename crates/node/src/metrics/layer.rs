//! Counts the gRPC requests a listener answers, by method and status code
//! (`neuroshard_api_requests_total`). The method label is bounded: a path
//! outside this validator's services, or a method a service does not
//! implement, counts as `other`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;

/// The services a validator serves; any other path is `other`.
const SERVICES: &[&str] = &[
    "neuroshard.governance.v1.Governance",
    "neuroshard.raft.v1.RaftPeer",
    "neuroshard.raft.v1.ReplicaAdmin",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Clone, Copy, Debug)]
pub struct RequestMetricsLayer {
    pub listener: &'static str,
}

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics {
            inner,
            listener: self.listener,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequestMetrics<S> {
    inner: S,
    listener: &'static str,
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

fn method_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    let known = SERVICES.contains(&service)
        && !method.is_empty()
        && method.len() <= 64
        && method.bytes().all(|b| b.is_ascii_alphanumeric());
    known.then(|| format!("{service}/{method}"))
}

impl<S, B, RB> tower::Service<http::Request<B>> for RequestMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFut<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_of(req.uri().path());
        let listener = self.listener;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            if let Ok(resp) = &out {
                // An error is a trailers-only response (grpc-status in the
                // headers); a success carries it in the trailers: OK.
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                let method = match (&method, code) {
                    (Some(m), c) if c != tonic::Code::Unimplemented => m.clone(),
                    _ => "other".to_owned(),
                };
                super::metrics()
                    .api_requests
                    .get_or_create(&vec![
                        ("listener", listener.to_owned()),
                        ("method", method),
                        ("code", format!("{code:?}")),
                    ])
                    .inc();
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::method_of;

    #[test]
    fn methods_outside_the_services_are_not_labels() {
        assert_eq!(
            method_of("/neuroshard.governance.v1.Governance/Submit").as_deref(),
            Some("neuroshard.governance.v1.Governance/Submit")
        );
        assert_eq!(method_of("/evil.Service/Submit"), None);
        assert_eq!(method_of("/neuroshard.governance.v1.Governance/a-b"), None);
        assert_eq!(method_of("/"), None);
    }
}
