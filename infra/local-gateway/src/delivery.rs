//! How the hosted handlers' frames reach the sockets.
//!
//! On AWS a handler posts each frame to API Gateway's `@connections` management API, one
//! signed HTTPS request per frame and recipient. The local gateway can do the same against its
//! own `@connections` port ([`Delivery::Apigw`]), which proves the SDK path end to end but costs
//! a loopback HTTP round trip, a signature and a JSON parse per recipient. Since the gateway
//! hosts the handlers in its own process, it can instead hand each frame straight to the
//! socket's outbound queue ([`Delivery::InProcess`], the default): the same [`ConnectionHub`]
//! answers, with the same 410 semantics, without the HTTP detour.

use dlab_core::ids::ConnectionId;
use dlab_store::{Notifier, NotifyError, PostOutcome};

use crate::connections::ConnectionHub;

/// Which path the hosted handlers' posts take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// Straight into the socket's queue ([`HubNotifier`]): the fastest way to run a table.
    #[default]
    InProcess,
    /// Through `@connections` on the loopback management port with the AWS SDK, as on AWS.
    Apigw,
}

impl Delivery {
    /// The flag's spelling (`in-process`, `apigw`).
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::InProcess => "in-process",
            Delivery::Apigw => "apigw",
        }
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`Notifier`] that queues frames directly on the hub's sockets. A connection that is
/// unknown, closed or still connecting is [`PostOutcome::Gone`], exactly as `@connections`
/// answers 410 for it, so the handlers remove it the same way.
#[derive(Debug, Clone)]
pub struct HubNotifier {
    hub: ConnectionHub,
}

impl HubNotifier {
    /// Delivers to `hub`'s sockets.
    pub fn new(hub: ConnectionHub) -> Self {
        Self { hub }
    }
}

#[async_trait::async_trait]
impl Notifier for HubNotifier {
    async fn post(
        &self,
        connection: &ConnectionId,
        data: &[u8],
    ) -> Result<PostOutcome, NotifyError> {
        match self.hub.post(connection, data.to_vec()).await {
            Ok(()) => Ok(PostOutcome::Delivered),
            Err(_gone) => Ok(PostOutcome::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::{Identity, Outbound};

    #[tokio::test]
    async fn frames_reach_open_sockets_and_others_are_gone() {
        let hub = ConnectionHub::new();
        let notifier = HubNotifier::new(hub.clone());
        let (id, mut rx) = hub.register(Identity::default());
        // Still connecting: API Gateway answers 410 until `$connect` has succeeded.
        assert_eq!(
            notifier.post(&id, b"early").await.unwrap(),
            PostOutcome::Gone
        );
        hub.open(&id).unwrap();
        assert_eq!(
            notifier.post(&id, br#"{"type":"pong"}"#).await.unwrap(),
            PostOutcome::Delivered
        );
        assert_eq!(
            rx.recv().await,
            Some(Outbound::Text(r#"{"type":"pong"}"#.into()))
        );
        hub.remove(&id);
        assert_eq!(
            notifier.post(&id, b"late").await.unwrap(),
            PostOutcome::Gone
        );
        let unknown = ConnectionId::new("nobody");
        assert_eq!(
            notifier.post(&unknown, b"x").await.unwrap(),
            PostOutcome::Gone
        );
    }

    #[test]
    fn the_flag_values_are_spelled_as_documented() {
        use clap::ValueEnum;
        let names: Vec<String> = Delivery::value_variants()
            .iter()
            .map(|d| d.to_possible_value().unwrap().get_name().to_owned())
            .collect();
        assert_eq!(names, ["in-process", "apigw"]);
        for d in Delivery::value_variants() {
            assert_eq!(d.to_possible_value().unwrap().get_name(), d.as_str());
        }
        assert_eq!(Delivery::default(), Delivery::InProcess);
    }
}
