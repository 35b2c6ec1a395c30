//! Bot-check and captcha interstitials: pages a snapshotter may get instead of the content.

use std::fmt;

/// A sign that a page is an interstitial rather than content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interstitial {
    /// Cloudflare's "Just a moment..." JavaScript challenge.
    JustAMoment,
    /// Cloudflare's "Attention Required!" block page.
    AttentionRequired,
    /// A "Checking your browser before accessing ..." page.
    CheckingYourBrowser,
    /// Cloudflare challenge markup (`cf-challenge`, `cf_chl_`, challenge-platform scripts).
    CloudflareChallenge,
    /// A reCAPTCHA widget (`g-recaptcha`).
    Recaptcha,
    /// An hCaptcha widget (`h-captcha`).
    Hcaptcha,
}

impl Interstitial {
    /// Whether the marker alone proves the page is an interstitial. Captcha widgets also appear on
    /// real pages (comment and contact forms), so for them the page must also lack content.
    pub fn is_conclusive(self) -> bool {
        !matches!(self, Interstitial::Recaptcha | Interstitial::Hcaptcha)
    }
}

impl fmt::Display for Interstitial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interstitial::JustAMoment => "bot check interstitial (\"Just a moment...\")",
            Interstitial::AttentionRequired => "Cloudflare \"Attention Required\" block page",
            Interstitial::CheckingYourBrowser => "\"Checking your browser\" interstitial",
            Interstitial::CloudflareChallenge => "Cloudflare challenge page",
            Interstitial::Recaptcha => "reCAPTCHA wall",
            Interstitial::Hcaptcha => "hCaptcha wall",
        })
    }
}

/// Markers, lower-case, in the order they are checked: conclusive ones first.
const MARKERS: &[(&str, Interstitial)] = &[
    ("<title>just a moment", Interstitial::JustAMoment),
    (
        "attention required! | cloudflare",
        Interstitial::AttentionRequired,
    ),
    ("checking your browser", Interstitial::CheckingYourBrowser),
    ("cf-challenge", Interstitial::CloudflareChallenge),
    ("cf_chl_opt", Interstitial::CloudflareChallenge),
    (
        "/cdn-cgi/challenge-platform/",
        Interstitial::CloudflareChallenge,
    ),
    ("g-recaptcha", Interstitial::Recaptcha),
    ("h-captcha", Interstitial::Hcaptcha),
];

/// The first interstitial marker found in `html` (ASCII case-insensitive), conclusive ones first.
///
/// ```
/// use d402_cap_page_to_markdown::{Interstitial, detect_interstitial};
/// let html = "<html><head><title>Just a moment...</title></head></html>";
/// assert_eq!(detect_interstitial(html), Some(Interstitial::JustAMoment));
/// assert_eq!(detect_interstitial("<p>hello</p>"), None);
/// ```
pub fn detect_interstitial(html: &str) -> Option<Interstitial> {
    // One lower-cased copy, then fast substring searches: cheaper than a case-insensitive scan per
    // marker, and tiny next to parsing the page.
    let lower = html.to_ascii_lowercase();
    MARKERS
        .iter()
        .find(|(marker, _)| lower.contains(marker))
        .map(|&(_, kind)| kind)
}
