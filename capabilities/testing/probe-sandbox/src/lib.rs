//! Probes everything a `wasm32-wasip2` program can reach through std and reports it as JSON, so a host
//! test can assert that nothing leaked (no environment, arguments, files or sockets) and that the clock
//! and randomness are the deterministic ones the host provides.
//!
//! Output shape: `{"env": [[k, v]], "args": [..], "cwd": r, "readDirRoot": r, "readEtcPasswd": r,
//! "writeFile": r, "tcpConnect": r, "timeMs": n | null, "randomHex": s | null, "hashSeed": n}` where each
//! `r` is `{"ok": ..}` or `{"err": "message"}`.

use std::fmt::Write as _;

/// Appends `s` to `out` as a JSON string literal.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"ok": <ok>}` or `{"err": "<message>"}`.
fn outcome<T, E: std::fmt::Display>(
    out: &mut String,
    result: Result<T, E>,
    ok: impl FnOnce(&mut String, T),
) {
    match result {
        Ok(value) => {
            out.push_str("{\"ok\":");
            ok(out, value);
            out.push('}');
        }
        Err(e) => {
            out.push_str("{\"err\":");
            json_string(out, &e.to_string());
            out.push('}');
        }
    }
}

/// Runs every probe and returns the JSON report.
pub fn probe() -> String {
    let mut out = String::from("{\"env\":[");
    for (i, (k, v)) in std::env::vars_os().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        json_string(&mut out, &k.to_string_lossy());
        out.push(',');
        json_string(&mut out, &v.to_string_lossy());
        out.push(']');
    }
    out.push_str("],\"args\":[");
    for (i, arg) in std::env::args_os().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, &arg.to_string_lossy());
    }
    out.push_str("],\"cwd\":");
    outcome(&mut out, std::env::current_dir(), |o, p| {
        json_string(o, &p.to_string_lossy())
    });
    out.push_str(",\"readDirRoot\":");
    let listing = std::fs::read_dir("/").and_then(|dir| {
        dir.map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>, _>>()
    });
    outcome(&mut out, listing, |o, names| {
        o.push('[');
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            json_string(o, name);
        }
        o.push(']');
    });
    out.push_str(",\"readEtcPasswd\":");
    outcome(&mut out, std::fs::read("/etc/passwd"), |o, bytes| {
        json_string(o, &String::from_utf8_lossy(&bytes))
    });
    out.push_str(",\"writeFile\":");
    outcome(
        &mut out,
        std::fs::write("x", b"written by probe-sandbox"),
        |o, ()| o.push_str("true"),
    );
    out.push_str(",\"tcpConnect\":");
    outcome(
        &mut out,
        std::net::TcpStream::connect("127.0.0.1:80"),
        |o, stream| json_string(o, &format!("{:?}", stream.peer_addr())),
    );
    out.push_str(",\"timeMs\":");
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => {
            let _ = write!(out, "{}", d.as_millis());
        }
        Err(_) => out.push_str("null"),
    }
    out.push_str(",\"randomHex\":");
    let mut bytes = [0u8; 16];
    match getrandom::fill(&mut bytes) {
        Ok(()) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            json_string(&mut out, &hex);
        }
        Err(_) => out.push_str("null"),
    }
    // std's HashMap seeds come from the same randomness source.
    use std::hash::BuildHasher as _;
    let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
    let _ = write!(out, ",\"hashSeed\":{seed}}}");
    out
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct ProbeSandbox;

    impl Guest for ProbeSandbox {
        fn run(_input: String) -> Result<String, CapabilityError> {
            Ok(crate::probe())
        }
    }

    export!(ProbeSandbox);
}

#[cfg(test)]
mod tests {
    // probe() itself is not run natively: it would touch the real filesystem and network.

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        super::json_string(&mut out, "a\"b\\c\n");
        assert_eq!(out, r#""a\"b\\c\u000a""#);
    }
}
