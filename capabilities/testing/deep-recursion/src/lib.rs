//! Recurses without bound (the input sets the depth, by default more than any stack holds), and not
//! in tail position, so the native wasm call stack overflows.
//!
//! The frame keeps its values in wasm locals, not in the shadow stack in linear memory: a program
//! that spills big frames to the shadow stack runs off the bottom of its own memory first, which
//! wasmtime reports as an out-of-bounds access, not as a stack overflow.

/// Reads `{"depth": n}`; anything else means "deeper than any stack".
pub fn depth_from_input(input: &str) -> u64 {
    input
        .split_once("\"depth\"")
        .and_then(|(_, rest)| rest.trim_start().strip_prefix(':'))
        .map(|rest| rest.trim_start())
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Non-tail recursion: the result is combined with two operations after the call, which LLVM's
/// accumulator tail-recursion elimination does not turn into a loop.
#[inline(never)]
pub fn descend(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    descend(depth + 1, limit)
        .wrapping_mul(31)
        .rotate_left((depth % 7) as u32)
        ^ depth
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "capability" });

    struct DeepRecursion;

    impl Guest for DeepRecursion {
        fn run(input: String) -> Result<String, CapabilityError> {
            let total = crate::descend(0, crate::depth_from_input(&input));
            Ok(format!("{{\"total\":{total}}}"))
        }
    }

    export!(DeepRecursion);
}

#[cfg(test)]
mod tests {
    #[test]
    fn shallow_recursion_returns() {
        assert_eq!(super::depth_from_input(r#"{"depth": 10}"#), 10);
        assert_eq!(super::depth_from_input("{}"), u64::MAX);
        let _ = super::descend(0, 10);
    }
}
