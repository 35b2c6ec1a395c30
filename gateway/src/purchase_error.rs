//! Why a purchase did not complete: the buyer client's one error type, shared by the client and the
//! channel wallets it pays from (so that neither depends on the other for it).

use std::time::Duration;

use d402_rails::Atomic;

/// Why a purchase did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("gateway: {0}")]
    Http(#[from] reqwest::Error),
    #[error("gateway answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the 402 carries no usable PAYMENT-REQUIRED header: {0}")]
    Challenge(String),
    #[error("no payment option this client can pay (schemes offered: {0})")]
    NoOption(String),
    #[error("the price {price} is above the spend cap {cap} (atomic units): not paying")]
    OverCap { price: Atomic, cap: Atomic },
    #[error("signing the payment: {0}")]
    Sign(String),
    #[error("the task did not finish within {0:?}")]
    Timeout(Duration),
}
