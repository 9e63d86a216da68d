//! A deterministic stand-in for a tokenizer and a language model.
//!
//! Tokens are pieces of text: runs of up to four letters or digits (with the space before
//! them), or single other characters. Ids are stable hashes of the pieces. Generated text is
//! drawn from a fixed vocabulary by a generator seeded from the request, so the same request
//! gives the same bytes.

use std::hash::{Hash, Hasher};

/// Vocabulary size; token ids are below it.
pub const VOCAB_SIZE: u32 = 32000;

/// The pieces the model "writes", in the spirit of the real tiny random model's output.
const PIECES: &[&str] = &[
    " the",
    " of",
    " and",
    " to",
    " in",
    " is",
    " that",
    " for",
    " it",
    " as",
    " with",
    " on",
    " be",
    " at",
    " by",
    " this",
    " from",
    " or",
    " an",
    " which",
    " data",
    " model",
    " value",
    " time",
    " system",
    " state",
    " token",
    " start",
    " str",
    " list",
    " path",
    " node",
    " user",
    " file",
    " type",
    " name",
    " error",
    " result",
    " request",
    " server",
    " cache",
    " batch",
    "ing",
    "ed",
    "er",
    "ly",
    "tion",
    "al",
    "es",
    "s",
    "ment",
    "ness",
    "able",
    "ize",
    "ence",
    "ser",
    "OD",
    "lease",
    "zip",
    "linen",
    "module",
    "lections",
    " specified",
    "stat",
    "ca",
    "help",
    "sse",
    " sh",
    "ial",
    " env",
    " functions",
    "link",
    "ber",
    " raw",
    "alue",
    "ARex",
    ",",
    ".",
    ":",
    ";",
    "(",
    ")",
    "'",
    "\"",
    "-",
    "_",
    "/",
    " 0",
    " 1",
    " 2",
    "42",
    "7",
    " alpha",
    " beta",
    " gamma",
    " delta",
    " signal",
    " trace",
    " span",
    " engine",
    " queue",
    " decode",
    " prefill",
    " stream",
    " chunk",
    " latency",
    " kernel",
    " vector",
    " matrix",
    " weight",
    " layer",
    " head",
    " block",
    " page",
    " slot",
    " step",
    " graph",
    " scope",
];

/// A stable hash of `parts`: `DefaultHasher::new()` uses fixed keys, so the value is the same
/// on every run of the same build.
pub fn stable_hash<T: Hash + ?Sized>(parts: &[&T]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// Splits text into token pieces: a letter or digit (or a space) followed by up to four
/// letters or digits, or any other single character.
pub fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let mut end = first.len_utf8();
        if first == ' ' || first.is_alphanumeric() {
            // Up to four letters or digits in all, the first included unless it is the space.
            let room = 4 - usize::from(first != ' ');
            for (i, c) in chars.take_while(|(_, c)| c.is_alphanumeric()).take(room) {
                end = i + c.len_utf8();
            }
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// The token count of `text`.
pub fn count(text: &str) -> u32 {
    u32::try_from(pieces(text).count()).unwrap_or(u32::MAX)
}

/// The token ids of `text`.
pub fn ids(text: &str) -> Vec<u32> {
    pieces(text)
        .map(|p| (stable_hash(&[p]) % u64::from(VOCAB_SIZE - 100)) as u32 + 100)
        .collect()
}

/// Tokens the chat template adds per message (`<|im_start|>role\n … <|im_end|>\n`).
pub const CHAT_TOKENS_PER_MESSAGE: u32 = 5;
/// Tokens of the generation prompt (`<|im_start|>assistant\n`; the real tiny model's
/// byte-level tokenizer spends four tokens on `assistant`).
pub const CHAT_GENERATION_PROMPT: u32 = 6;

/// Generates tokens for one choice, deterministically.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: fastrand::Rng,
    eos_probability: f64,
    partial_probability: f64,
}

impl Generator {
    /// A generator seeded from `seed` (the simulator's seed, the request's seed and content,
    /// and the choice index combined by the caller).
    pub fn new(seed: u64, eos_probability: f64) -> Generator {
        Generator {
            rng: fastrand::Rng::with_seed(seed),
            eos_probability,
            partial_probability: 0.0,
        }
    }

    /// Also draws, with this chance, tokens whose text is empty (half a UTF-8 character).
    pub fn with_partial_tokens(mut self, probability: f64) -> Generator {
        self.partial_probability = probability;
        self
    }

    /// The next token: `None` is end-of-sequence.
    pub fn next_token(&mut self) -> Option<&'static str> {
        if self.eos_probability > 0.0 && self.rng.f64() < self.eos_probability {
            return None;
        }
        if self.partial_probability > 0.0 && self.rng.f64() < self.partial_probability {
            return Some("");
        }
        let i = self.rng.usize(..PIECES.len());
        PIECES.get(i).copied()
    }

    /// A number in `range`, for arguments and fault splits.
    pub fn usize(&mut self, range: std::ops::RangeInclusive<usize>) -> usize {
        self.rng.usize(range)
    }

    /// A float in [-1, 1), for embeddings.
    pub fn unit(&mut self) -> f32 {
        self.rng.f32() * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_text() {
        for text in [
            "hello world",
            " weather in Paris?",
            "a,b  c",
            "",
            "été 42!",
            "  ",
        ] {
            let joined: String = pieces(text).collect();
            assert_eq!(joined, text);
        }
        assert_eq!(
            pieces("hello world").collect::<Vec<_>>(),
            ["hell", "o", " worl", "d"]
        );
        assert_eq!(count("hi"), 1);
    }

    #[test]
    fn ids_are_stable_and_in_range() {
        assert_eq!(ids("hello world"), ids("hello world"));
        assert!(
            ids("hello world")
                .iter()
                .all(|&i| (100..VOCAB_SIZE).contains(&i))
        );
    }

    #[test]
    fn generation_is_deterministic() {
        let a: Vec<_> = {
            let mut g = Generator::new(7, 0.0);
            (0..20).map(|_| g.next_token()).collect()
        };
        let b: Vec<_> = {
            let mut g = Generator::new(7, 0.0);
            (0..20).map(|_| g.next_token()).collect()
        };
        assert_eq!(a, b);
        let mut g = Generator::new(7, 1.0);
        assert_eq!(g.next_token(), None);
    }
}
