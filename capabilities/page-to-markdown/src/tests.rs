use super::*;

const ARTICLE: &str = include_str!("../tests/fixtures/article.html");

#[test]
fn article_becomes_markdown_without_scripts_or_chrome() {
    let page = convert(ARTICLE, "https://example.org/news/frozen").expect("article converts");
    assert_eq!(page.source, ContentSource::Extracted);
    assert_eq!(page.title, "Why frozen pages matter");
    assert!(
        page.markdown.contains("content-addressed evidence"),
        "{}",
        page.markdown
    );
    assert!(
        page.markdown.contains("Snapshots are stored by CID."),
        "{}",
        page.markdown
    );
    assert!(
        !page.markdown.contains("SHOULD_NOT_APPEAR"),
        "{}",
        page.markdown
    );
    assert!(!page.markdown.contains("font-family"), "{}", page.markdown);
    assert!(!page.markdown.contains("Trending one"), "{}", page.markdown);
    assert_eq!(page.markdown, normalize_markdown(&page.markdown));
    assert_eq!(page.content_hash, content_hash(&page.markdown));
}

#[test]
fn conversion_is_deterministic() {
    let a = convert(ARTICLE, "https://example.org/news/frozen").expect("converts");
    let b = convert(ARTICLE, "https://example.org/news/frozen").expect("converts");
    assert_eq!(a, b);
}

#[test]
fn page_without_article_falls_back_to_body() {
    let html = "<html><head><title>Index</title><script>var x = 'NO_SCRIPT';</script></head>\
                <body><ul><li><a href='/a'>A</a></li><li><a href='/b'>B</a></li></ul></body></html>";
    let page = convert(html, "https://example.org/").expect("index converts");
    assert!(
        page.markdown.contains("[A](/a)") || page.markdown.contains('A'),
        "{}",
        page.markdown
    );
    assert!(!page.markdown.contains("NO_SCRIPT"));
}

#[test]
fn empty_page_gives_empty_markdown() {
    let page = convert("", "https://example.org/").expect("empty converts");
    assert_eq!(page.markdown, "");
    assert_eq!(page.content_hash, content_hash(""));
}

#[test]
fn interstitials_are_blocked() {
    let cases = [
        (
            "<html><head><title>Just a moment...</title></head><body>Enable JavaScript</body></html>",
            Interstitial::JustAMoment,
        ),
        (
            "<html><head><title>Attention Required! | Cloudflare</title></head><body></body></html>",
            Interstitial::AttentionRequired,
        ),
        (
            "<html><body><h1>Checking your browser before accessing example.org.</h1></body></html>",
            Interstitial::CheckingYourBrowser,
        ),
        (
            "<html><body><div id=\"cf-challenge-running\"></div></body></html>",
            Interstitial::CloudflareChallenge,
        ),
        (
            "<html><body><p>Please verify you are human</p><div class=\"g-recaptcha\" data-sitekey=\"k\"></div></body></html>",
            Interstitial::Recaptcha,
        ),
        (
            "<html><body><form><div class=\"h-captcha\" data-sitekey=\"k\"></div></form></body></html>",
            Interstitial::Hcaptcha,
        ),
    ];
    for (html, expected) in cases {
        assert_eq!(
            convert(html, "https://example.org/"),
            Err(ConvertError::Blocked(expected)),
            "{html}"
        );
    }
}

#[test]
fn article_with_a_captcha_comment_form_is_not_blocked() {
    let html = ARTICLE.replace(
        "</main>",
        "<form class=\"comments\"><div class=\"g-recaptcha\" data-sitekey=\"k\"></div></form></main>",
    );
    let page = convert(&html, "https://example.org/news/frozen").expect("not an interstitial");
    assert!(page.markdown.contains("content-addressed evidence"));
}

#[test]
fn normalisation() {
    assert_eq!(normalize_markdown(""), "");
    assert_eq!(normalize_markdown(" \n\t\n"), "");
    assert_eq!(normalize_markdown("a\r\nb\rc"), "a\nb\nc");
    assert_eq!(normalize_markdown("a  \n\n\n\n  b  "), "a\n\n  b");
    assert_eq!(normalize_markdown("\n\n  # T\n"), "# T");
    let messy = "x \r\n\r\n\r\n y\t\n";
    assert_eq!(
        normalize_markdown(&normalize_markdown(messy)),
        normalize_markdown(messy)
    );
}

#[test]
fn input_parsing() {
    assert_eq!(
        Input::parse(r#"{"url":"https://example.org/","timeoutMs":5000}"#),
        Ok(Input {
            url: "https://example.org/".to_owned(),
            timeout_ms: Some(5000)
        })
    );
    assert!(Input::parse(r#"{"url":"https://example.org/"}"#).is_ok());
    assert!(Input::parse("not json").is_err());
    assert!(Input::parse(r#"{"url": 3}"#).is_err());
    assert!(Input::parse(r#"{"url":"file:///etc/passwd"}"#).is_err());
    assert!(Input::parse(r#"{"url":"https://x/","timeoutMs":-1}"#).is_err());
    assert!(Input::parse(r#"{"url":"https://x/","extra":1}"#).is_err());
}

#[test]
fn output_json_shape() {
    let page = convert(ARTICLE, "https://example.org/news/frozen").expect("converts");
    let json = Output::new(page, "bafkreiexample".to_owned()).to_json();
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid json");
    for key in ["title", "markdown", "contentHash", "evidence"] {
        assert!(value.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(value["evidence"][0], "bafkreiexample");
}
