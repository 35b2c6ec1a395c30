//! The sale: a challenge, then a payment, then a paid task.
//!
//! A challenge's requirements come from the rail for server-owned [`Terms`]; when the rail binds
//! a challenge to one task they are recorded before the 402 leaves, so that a payment answering
//! them can be tied back to what was offered. A payment passes the idempotency and replay checks,
//! the rail's verification, and is committed as a `Verified` task before anything is settled.

use std::sync::Arc;
use std::time::Duration;

use d402_rails::rail::{ResourceInfo, X402Version2};
use d402_rails::{
    Commission, PaymentPayload, PaymentRequired, PaymentRequirements, RailError, TaskId, Terms,
};

use super::{
    Challenge, Gateway, GatewayError, Listing, Submitted, TaskRecord, TaskState, digest_json,
    now_ms, now_unix, random_id,
};

/// The x402 extension key of the buyer's idempotency id.
pub const PAYMENT_IDENTIFIER: &str = "payment-identifier";

/// How often a waiting `POST /tasks` re-reads its task when no transition woke it (a task
/// record another process changed, which no local transition announces).
const WAIT_BACKSTOP: Duration = Duration::from_millis(250);

/// The `payment-identifier` id in a payload's extensions (`{"payment-identifier": {"info":
/// {"id": …}}}`), if the buyer gave one.
pub fn payment_identifier(payload: &PaymentPayload) -> Option<String> {
    let ext = serde_json::to_value(&payload.extensions).ok()?;
    let info = &ext.get(PAYMENT_IDENTIFIER)?["info"];
    info.get("id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(str::to_string)
}

/// Adds a refusal's fields to every option's `extra`: how a client out of step gets back in step
/// (a channel's corrective 402 carries the channel's state and the last voucher).
pub(super) fn add_extra(required: &mut PaymentRequired, extra: Option<&serde_json::Value>) {
    if let Some(serde_json::Value::Object(more)) = extra {
        for accepted in &mut required.accepts {
            if let Some(serde_json::Value::Object(e)) = &mut accepted.extra {
                e.extend(more.clone());
            }
        }
    }
}

impl Gateway {
    /// The terms of a new task of `listing`: server-owned price, split and deadlines.
    fn terms(&self, listing: &Listing, task_id: &str) -> Terms {
        let bps = listing.accepted.creator_commission_bps.min(u16::MAX as u32) as u16;
        // The creator is paid on the rail's chain, at the wallet it named for that chain.
        let chain =
            d402_registry::wallet::Rail::of_namespace(self.rail.payout_network().namespace());
        let commission = (bps > 0).then(|| Commission {
            wallet: chain
                .and_then(|c| listing.accepted.creator_wallets.get(c))
                .unwrap_or_default()
                .to_string(),
            bps,
        });
        Terms {
            task_id: TaskId::from_label(task_id),
            price: self.policy.price,
            pay_to: self.policy.pay_to.clone(),
            commission,
            gateway_fee: self.policy.gateway_fee,
            max_timeout_seconds: self.policy.max_timeout_seconds,
            deadline_unix: now_unix()
                + self.policy.max_timeout_seconds
                + self.policy.task_deadline.as_secs()
                + self.policy.refund_after.as_secs(),
        }
    }

    /// Issues a challenge for `capability` and `input` (already policy-checked): the 402's
    /// body. The requirements are recorded before they are returned (they are about to leave).
    pub fn challenge(
        &self,
        capability: &str,
        input: &str,
    ) -> Result<PaymentRequired, GatewayError> {
        match self.issue(capability, input, true) {
            Ok((required, _)) => {
                self.metrics.inc(&self.metrics.challenges);
                Ok(required)
            }
            Err(e) => {
                self.metrics.inc(&self.metrics.challenges_refused);
                Err(e)
            }
        }
    }

    /// A fresh challenge as the error `POST /tasks` answers with: 402, with the x402 reason
    /// and message of a refused payment (`refusal`), or `payment_required`.
    fn payment_required(
        &self,
        capability: &str,
        input: &str,
        refusal: Option<(&'static str, String)>,
        extra: Option<&serde_json::Value>,
    ) -> GatewayError {
        let mut required = match self.challenge(capability, input) {
            Ok(r) => r,
            Err(e) => return e,
        };
        add_extra(&mut required, extra);
        let (reason, message) = match refusal {
            Some((r, m)) => (Some(r), m),
            None => (None, "payment required".to_string()),
        };
        required.error = Some(reason.unwrap_or("payment_required").to_string());
        GatewayError::PaymentRequired {
            reason,
            message,
            required: Box::new(required),
        }
    }

    /// The requirements an x402 v1 `X-PAYMENT` answers: v1 payloads do not carry them, so only
    /// a rail that asks the same of every task of a capability can take one (`None` otherwise).
    pub fn v1_requirements(
        &self,
        capability: &str,
    ) -> Result<Option<PaymentRequirements>, GatewayError> {
        if self.rail.challenge_per_task() {
            return Ok(None);
        }
        let (required, _) = self.issue(capability, "", false)?;
        Ok(required.accepts.into_iter().next())
    }

    /// The requirements for a new task of `capability`, and what they were issued for. With
    /// `record`, a challenge bound to its task is committed before it is returned.
    fn issue(
        &self,
        capability: &str,
        input: &str,
        record: bool,
    ) -> Result<(PaymentRequired, Challenge), GatewayError> {
        let listing = self.listing(capability)?;
        let task_id = random_id();
        let terms = self.terms(listing, &task_id);
        let requirements = self.rail.challenge(&terms).map_err(|e| match e {
            RailError::Cap(c) => GatewayError::ChallengeRefused(c.to_string()),
            e @ (RailError::CommissionOnDirectRail { .. } | RailError::ChannelHeadroom { .. }) => {
                GatewayError::ChallengeRefused(e.to_string())
            }
            e => GatewayError::Rail(e),
        })?;
        let bound = self.rail.challenge_per_task();
        let challenge = Challenge {
            capability: capability.to_string(),
            task_id: bound.then(|| task_id.clone()),
            input_digest: bound.then(|| digest_json(&input)),
            deadline_unix: terms.deadline_unix,
        };
        if record && bound {
            self.store
                .record_challenge(&digest_json(&requirements), &challenge)?;
        }
        let required = PaymentRequired {
            x402_version: X402Version2,
            error: None,
            resource: Some(ResourceInfo {
                url: format!("{}/tasks", self.public_url),
                description: Some(format!("one {capability} task")),
                mime_type: Some("application/json".into()),
            }),
            accepts: vec![requirements],
            extensions: Default::default(),
        };
        Ok((required, challenge))
    }

    /// The requirements a payment must answer and the challenge they came from. When the rail
    /// asks the same of every task they are issued afresh and the rail's checks name exactly
    /// what differs (asset, network, amount); when it binds a challenge to one task they must
    /// be ones this gateway recorded.
    fn answered(
        &self,
        capability: &str,
        input: &str,
        payment: &PaymentPayload,
    ) -> Result<Option<(PaymentRequirements, Challenge)>, GatewayError> {
        if !self.rail.challenge_per_task() {
            let (required, challenge) = self.issue(capability, input, false)?;
            return Ok(required.accepts.into_iter().next().map(|r| (r, challenge)));
        }
        Ok(
            match self.store.challenge(&digest_json(&payment.accepted))? {
                Some(c) if c.capability == capability => Some((payment.accepted.clone(), c)),
                _ => None,
            },
        )
    }

    /// `POST /tasks`: challenge, or verify + settle + dispatch, and wait up to the policy's
    /// wait for the result.
    pub async fn submit(
        self: &Arc<Self>,
        capability: &str,
        input: &serde_json::Value,
        payment: Option<PaymentPayload>,
    ) -> Result<Submitted, GatewayError> {
        self.listing(capability)?;
        let input = self.policy.check_input(input)?;
        let Some(payment) = payment else {
            self.check_incident()?;
            return Err(self.payment_required(capability, &input, None, None));
        };
        let offered = input.clone();
        let refuse_with =
            |reason: &'static str, message: String, extra: Option<&serde_json::Value>| {
                self.metrics.inc(&self.metrics.payments_refused);
                Err(self.payment_required(capability, &offered, Some((reason, message)), extra))
            };
        let refuse = |reason: &'static str, message: String| refuse_with(reason, message, None);

        let digest = digest_json(&payment.payload);
        let payment_id = payment_identifier(&payment);
        if let Some(pid) = &payment_id
            && let Some((stored_digest, task)) = self.store.by_payment_id(pid)?
        {
            if stored_digest != digest {
                self.metrics.inc(&self.metrics.payment_id_conflicts);
                return Err(GatewayError::IdempotencyConflict(pid.clone()));
            }
            let record = self
                .store
                .get(&task)?
                .ok_or_else(|| GatewayError::TaskNotFound(task.clone()))?;
            self.metrics.inc(&self.metrics.idempotent_replays);
            return Ok(Submitted {
                record: self.wait_for(record).await?,
                replay: true,
            });
        }
        // Past the stored answers to retries: from here on a payment would be taken.
        self.check_incident()?;
        if self.store.by_payment_digest(&digest)?.is_some() {
            self.metrics.inc(&self.metrics.replays_refused);
            // A client that sends a payment again whose answer it never got (a cumulative
            // voucher is the same bytes when re-signed) is told how to get back in step when the
            // rail can say (a channel's corrective 402); any other replay is refused as such.
            if let Some((requirements, _)) = self.answered(capability, &input, &payment)?
                && let Err(RailError::Verify(v)) = self.rail.verify(&payment, &requirements).await
                && v.requirements_extra().is_some()
            {
                return refuse_with(v.reason(), v.to_string(), v.requirements_extra());
            }
            return refuse(
                "authorization_already_used",
                "this payment was already used for a task".into(),
            );
        }

        let Some((requirements, challenge)) = self.answered(capability, &input, &payment)? else {
            return refuse(
                "invalid_payment_requirements",
                "the accepted requirements were not issued by this gateway for this capability"
                    .into(),
            );
        };
        if let Some(d) = &challenge.input_digest
            && *d != digest_json(&input)
        {
            return refuse(
                "invalid_payment_requirements",
                "the payment is bound to a task with a different input".into(),
            );
        }

        let verified = match self.rail.verify(&payment, &requirements).await {
            Ok(v) => v,
            Err(RailError::Verify(v)) => {
                return refuse_with(v.reason(), v.to_string(), v.requirements_extra());
            }
            Err(e) => return Err(GatewayError::Rail(e)),
        };
        let task_id = challenge.task_id.clone().unwrap_or_else(random_id);
        let Some(claim) = self.claim(&task_id) else {
            self.metrics.inc(&self.metrics.replays_refused);
            return refuse(
                "authorization_already_used",
                "this task is already being paid".into(),
            );
        };
        let split = self
            .rail
            .split_at_payment(&verified, self.policy.gateway_fee)?;
        let now = now_ms();
        let record = TaskRecord {
            id: task_id,
            capability: capability.to_string(),
            input,
            rail: self.rail.name().to_string(),
            state: TaskState::Verified,
            requirements,
            payment,
            payment_digest: digest,
            payment_id,
            verified,
            settlement: None,
            release: None,
            refund: None,
            output: None,
            receipts: Vec::new(),
            verdict: None,
            assurance: None,
            disputed: None,
            worker_wallet: None,
            worker_wallets: Vec::new(),
            split,
            error: None,
            deadline_unix: challenge.deadline_unix,
            refund_due_unix: None,
            created_ms: now,
            updated_ms: now,
        };
        // Committed before anything is sent: a crash from here on is reconciled on restart.
        if self.store.insert_new(&record)?.is_some() {
            self.metrics.inc(&self.metrics.replays_refused);
            return refuse(
                "authorization_already_used",
                "this payment was already used for a task".into(),
            );
        }
        self.metrics.inc(&self.metrics.payments_verified);
        let record = match self.settle_new(record).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return refuse(
                    "authorization_already_used",
                    "this payment was already used".into(),
                );
            }
            // Refused at settlement after all (a channel's cumulative amount moved meanwhile).
            Err(GatewayError::Rail(RailError::Verify(v))) => {
                return refuse_with(v.reason(), v.to_string(), v.requirements_extra());
            }
            Err(e) => return Err(e),
        };
        self.spawn_run(record.clone(), claim);
        Ok(Submitted {
            record: self.wait_for(record).await?,
            replay: false,
        })
    }

    /// Waits up to the policy's wait for a task to leave the states before delivery, and a
    /// refund the rail makes at once (one due later, an escrow's, is answered as pending).
    async fn wait_for(&self, record: TaskRecord) -> Result<TaskRecord, GatewayError> {
        let until = tokio::time::Instant::now() + self.policy.wait;
        // Subscribed before the first read, so a transition committed in between still wakes us.
        let mut woken = self.transitions.subscribe();
        let mut record = match self.store.get(&record.id)? {
            Some(r) => r,
            None => record,
        };
        while matches!(
            record.state,
            TaskState::Verified | TaskState::Settled | TaskState::Validated
        ) || (record.state == TaskState::RefundPending && record.refund_due_unix.is_none())
        {
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            let _ = tokio::time::timeout_at(until.min(now + WAIT_BACKSTOP), woken.changed()).await;
            woken.mark_unchanged();
            if let Some(r) = self.store.get(&record.id)? {
                record = r;
            }
        }
        Ok(record)
    }
}
