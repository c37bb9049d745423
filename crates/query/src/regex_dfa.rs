//! A text regex as a DFA that runs over a templated text piece by piece (see
//! `eddy_store::template_walk`), so that a regex over parsed events needs no built texts.
//!
//! The DFA is built from the same pattern with the same syntax as the regex crate's, unanchored
//! and for one whole text, so it matches exactly the texts the regex does. Patterns whose DFA
//! would be large are not built; a Unicode word boundary makes the DFA give up on non-ASCII
//! bytes, and those texts are then searched as before.

use eddy_store::template_walk::{Automaton, Step};
use regex_automata::dfa::{dense, Automaton as _};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::Anchored;

/// The most memory a regex's DFA may take.
const SIZE_LIMIT: usize = 2 << 20;

/// A regex's DFA with its start state.
#[derive(Debug, Clone)]
pub struct RegexDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl RegexDfa {
    /// The DFA of `pattern` (flags inline), or `None` when it would be too large or cannot be
    /// built.
    pub fn new(pattern: &str) -> Option<RegexDfa> {
        let dfa = dense::Builder::new()
            .configure(
                dense::DFA::config()
                    .dfa_size_limit(Some(SIZE_LIMIT))
                    .determinize_size_limit(Some(2 * SIZE_LIMIT))
                    .unicode_word_boundary(true),
            )
            .build(pattern)
            .ok()?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::No))
            .ok()?;
        Some(RegexDfa { dfa, start })
    }

    /// Whether the DFA matches `text`, or `None` when it gives up.
    #[cfg(test)]
    fn is_match(&self, text: &str) -> Option<bool> {
        match self.run(self.start, text.as_bytes()) {
            Step::At(s) => self.end(s),
            Step::Decided(d) => Some(d),
            Step::Unsure => None,
        }
    }
}

impl Automaton for RegexDfa {
    type State = StateID;

    fn start(&self) -> StateID {
        self.start
    }

    fn run(&self, mut state: StateID, bytes: &[u8]) -> Step<StateID> {
        let mut at = 0;
        while at < bytes.len() {
            if self.dfa.is_accel_state(state) {
                // Every byte but these keeps the state: skip to the next of them.
                match find_any(self.dfa.accelerator(state), &bytes[at..]) {
                    Some(skip) => at += skip,
                    None => return Step::At(state),
                }
            }
            state = self.dfa.next_state(state, bytes[at]);
            at += 1;
            if self.dfa.is_special_state(state) {
                if self.dfa.is_match_state(state) {
                    return Step::Decided(true);
                }
                if self.dfa.is_dead_state(state) {
                    return Step::Decided(false);
                }
                if self.dfa.is_quit_state(state) {
                    return Step::Unsure;
                }
            }
        }
        Step::At(state)
    }

    fn movers(&self, state: StateID) -> Option<&[u8]> {
        self.dfa
            .is_accel_state(state)
            .then(|| self.dfa.accelerator(state))
    }

    fn matched(&self, state: StateID) -> bool {
        // A DFA reports a match one byte late: a state that has seen one moves to a match
        // state on every byte and at the end; a look-around at the end (`$`, `\b`) does not.
        let is_match = |s| self.dfa.is_match_state(s);
        is_match(self.dfa.next_eoi_state(state))
            && (0..=u8::MAX).all(|b| is_match(self.dfa.next_state(state, b)))
    }

    fn end(&self, state: StateID) -> Option<bool> {
        let last = self.dfa.next_eoi_state(state);
        match self.dfa.is_quit_state(last) {
            true => None,
            false => Some(self.dfa.is_match_state(last)),
        }
    }
}

/// Where the first of `needles` (at most three) is in `hay`.
fn find_any(needles: &[u8], hay: &[u8]) -> Option<usize> {
    match *needles {
        [a] => memchr::memchr(a, hay),
        [a, b] => memchr::memchr2(a, b, hay),
        [a, b, c] => memchr::memchr3(a, b, c, hay),
        _ => hay.iter().position(|b| needles.contains(b)),
    }
}

/// The regex crate's search of a whole text, for comparing with in tests.
#[cfg(test)]
fn regex_says(pattern: &str, text: &str) -> bool {
    regex::Regex::new(pattern).is_ok_and(|r| r.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATTERNS: &[&str] = &[
        r#"" 5[0-9][0-9] "#,
        r"/api/v[0-9]+/orders/[0-9]+",
        r"^GET",
        r"^\d+\.\d+",
        r"ERROR$",
        r"(?i)error",
        r"\bms\b",
        r"a|ab",
        r"x*",
        r"^$",
        r"é+",
        r"[^a-z]{3}",
    ];

    #[test]
    fn the_dfa_matches_the_texts_the_regex_does() {
        let texts = [
            "",
            "GET /api/v2/orders/17 HTTP/1.1\" 503 12 ",
            "10.0.0.1 - - \"GET / HTTP/1.1\" 200 5",
            "an ERROR",
            "ERROR: an error",
            "ms=5 ms",
            "forms",
            "café é",
            "ab",
        ];
        for p in PATTERNS {
            let dfa = RegexDfa::new(p).unwrap_or_else(|| panic!("{p} builds"));
            for t in texts {
                if let Some(got) = dfa.is_match(t) {
                    assert_eq!(got, regex_says(p, t), "{p} on {t:?}");
                }
            }
        }
    }

    #[test]
    fn a_text_run_in_pieces_is_decided_as_a_whole() {
        let dfa = RegexDfa::new(r#"" 5[0-9][0-9] "#).unwrap();
        let pieces = ["GET / HTTP/1.1", "\" ", "503", " ", "12"];
        let mut state = dfa.start();
        let mut decided = None;
        for p in pieces {
            match dfa.run(state, p.as_bytes()) {
                Step::At(s) => state = s,
                Step::Decided(d) => {
                    decided = Some(d);
                    break;
                }
                Step::Unsure => panic!("gave up"),
            }
        }
        assert_eq!(decided, Some(true));
    }

    proptest! {
        #[test]
        fn any_text_in_any_cut_gets_the_regex_answer(
            text in "[a-cE \"0-9/é\n]{0,40}",
            cuts in prop::collection::vec(0usize..40, 0..6),
            p in prop::sample::select(PATTERNS.to_vec()),
        ) {
            let dfa = RegexDfa::new(p).unwrap();
            let mut bounds: Vec<usize> = cuts
                .into_iter()
                .map(|c| c.min(text.len()))
                .filter(|&c| text.is_char_boundary(c))
                .collect();
            bounds.push(0);
            bounds.push(text.len());
            bounds.sort_unstable();
            let mut state = dfa.start();
            let mut got = None;
            for w in bounds.windows(2) {
                match dfa.run(state, &text.as_bytes()[w[0]..w[1]]) {
                    Step::At(s) => state = s,
                    Step::Decided(d) => { got = Some(Some(d)); break; }
                    Step::Unsure => { got = Some(None); break; }
                }
            }
            let got = got.unwrap_or_else(|| dfa.end(state));
            if let Some(got) = got {
                prop_assert_eq!(got, regex_says(p, &text), "{} on {:?}", p, text);
            }
        }
    }
}
