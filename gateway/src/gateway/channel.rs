//! Operations on a buyer's channel that buy nothing (x402 `batch-settlement`'s cooperative
//! refund): the requirements a client probes for, and the operation itself, which the rail
//! carries out. Allowed under the incident switch: giving money back is what an incident wants.

use d402_rails::rail::{ResourceInfo, X402Version2};
use d402_rails::{PaymentPayload, PaymentRequired, RailError, Settlement, TaskId, Terms};

use super::{Gateway, GatewayError, now_unix, random_id};

impl Gateway {
    /// The requirements a channel operation answers: the rail's, for the gateway's price and no
    /// capability (a client probes them to name its channel).
    pub fn channel_challenge(&self) -> Result<PaymentRequired, GatewayError> {
        let terms = Terms {
            task_id: TaskId::from_label(&random_id()),
            price: self.policy.price,
            pay_to: self.policy.pay_to.clone(),
            commission: None,
            gateway_fee: self.policy.gateway_fee,
            max_timeout_seconds: self.policy.max_timeout_seconds,
            deadline_unix: now_unix() + self.policy.max_timeout_seconds,
        };
        let requirements = self.rail.challenge(&terms).map_err(GatewayError::Rail)?;
        Ok(PaymentRequired {
            x402_version: X402Version2,
            error: None,
            resource: Some(ResourceInfo {
                url: format!("{}/channel/refund", self.public_url),
                description: Some("a refund of the unspent balance of a payment channel".into()),
                mime_type: Some("application/json".into()),
            }),
            accepts: vec![requirements],
            extensions: Default::default(),
        })
    }

    /// Carries out a channel operation; a refusal is a 402 with the x402 reason (and, for a
    /// client out of step, the corrective requirements).
    pub async fn channel_operation(
        &self,
        payment: &PaymentPayload,
    ) -> Result<Settlement, GatewayError> {
        let mut required = self.channel_challenge()?;
        let Some(requirements) = required.accepts.first().cloned() else {
            return Err(GatewayError::ChallengeRefused(
                "the rail offered nothing".into(),
            ));
        };
        match self.rail.channel_operation(payment, &requirements).await {
            Ok(s) => Ok(s),
            Err(RailError::Verify(v)) => {
                super::sale::add_extra(&mut required, v.requirements_extra());
                required.error = Some(v.reason().to_string());
                Err(GatewayError::PaymentRequired {
                    reason: Some(v.reason()),
                    message: v.to_string(),
                    required: Box::new(required),
                })
            }
            Err(e) => Err(GatewayError::Rail(e)),
        }
    }
}
