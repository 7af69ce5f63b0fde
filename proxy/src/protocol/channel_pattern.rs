//! The `pattern` of the server API's `channels`: Centrifugo's glob syntax (it matches with
//! gobwas/glob and no separators), so a backend's filters select the same channels here.
//!
//! `*` any run of characters (`**` too), `?` one character, `[abc]` / `[a-z]` one of a set,
//! `[!abc]` one not in it, `{chat:*,news}` one of the alternatives, `\` takes the next character
//! literally. A pattern that does not parse (an unclosed `[` or `{`) is an error rather than a
//! match of nothing, so a typo is noticed.

/// Most alternatives a pattern may expand to (`{a,b}{c,d}` is four): beyond it the pattern is
/// refused rather than matched slowly on every node.
const MAX_EXPANSIONS: usize = 256;

/// A parsed pattern: its `{…}` alternatives expanded into plain globs, each matched in time
/// proportional to its length times the channel's (no backtracking blow-up on `*a*a*a…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPattern(Vec<Vec<Token>>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_one(&self, c: char) -> bool {
        match self {
            Token::Literal(literal) => *literal == c,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|(low, high)| (low..=high).contains(&&c)) != *negated
            }
        }
    }
}

impl ChannelPattern {
    /// Parses `text`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        let (globs, end) = parse_seq(&chars, 0, false)?;
        debug_assert_eq!(end, chars.len());
        Ok(Self(globs))
    }

    pub fn matches(&self, channel: &str) -> bool {
        let text: Vec<char> = channel.chars().collect();
        self.0.iter().any(|glob| glob_matches(glob, &text))
    }
}

/// The globs of the text from `i` to the end, or (inside `{…}`) to an unescaped `,` or `}`,
/// with alternatives expanded; and where it stopped.
fn parse_seq(
    chars: &[char],
    mut i: usize,
    in_alternative: bool,
) -> Result<(Vec<Vec<Token>>, usize), String> {
    let mut globs: Vec<Vec<Token>> = vec![Vec::new()];
    let push = |globs: &mut Vec<Vec<Token>>, token: Token| {
        for glob in globs.iter_mut() {
            if !(token == Token::AnyRun && glob.last() == Some(&Token::AnyRun)) {
                glob.push(token.clone());
            }
        }
    };
    while i < chars.len() {
        match chars[i] {
            ',' | '}' if in_alternative => break,
            '\\' => {
                let next = chars.get(i + 1).ok_or("the pattern ends with a lone \\")?;
                push(&mut globs, Token::Literal(*next));
                i += 2;
            }
            '*' => {
                push(&mut globs, Token::AnyRun);
                i += 1;
            }
            '?' => {
                push(&mut globs, Token::AnyOne);
                i += 1;
            }
            '[' => {
                let (token, next) = parse_class(chars, i + 1)?;
                push(&mut globs, token);
                i = next;
            }
            '{' => {
                let mut alternatives = Vec::new();
                i += 1;
                loop {
                    let (mut expanded, next) = parse_seq(chars, i, true)?;
                    alternatives.append(&mut expanded);
                    match chars.get(next) {
                        Some(',') => i = next + 1,
                        Some('}') => {
                            i = next + 1;
                            break;
                        }
                        _ => return Err("a { has no closing }".to_owned()),
                    }
                }
                if globs.len() * alternatives.len() > MAX_EXPANSIONS {
                    return Err(format!(
                        "more than {MAX_EXPANSIONS} combinations of {{…}} alternatives"
                    ));
                }
                globs = globs
                    .iter()
                    .flat_map(|glob| {
                        alternatives.iter().map(move |alternative| {
                            let mut joined = glob.clone();
                            for token in alternative {
                                if !(*token == Token::AnyRun && joined.last() == Some(token)) {
                                    joined.push(token.clone());
                                }
                            }
                            joined
                        })
                    })
                    .collect();
            }
            c => {
                push(&mut globs, Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok((globs, i))
}

/// A `[…]` set whose first character is at `i`; returns the token and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Token, usize), String> {
    let negated = chars.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let c = match chars.get(i) {
            None => return Err("a [ has no closing ]".to_owned()),
            Some(']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, i + 1));
            }
            Some('\\') => {
                i += 1;
                *chars.get(i).ok_or("a [ has no closing ]")?
            }
            Some(c) => *c,
        };
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|c| *c != ']') {
            let high = chars[i + 2];
            if high < c {
                return Err(format!("the range {c}-{high} is reversed"));
            }
            ranges.push((c, high));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
}

/// Whether `glob` matches all of `text`: one pass over the pattern, keeping the set of text
/// positions reachable so far.
fn glob_matches(glob: &[Token], text: &[char]) -> bool {
    // reachable[j]: the tokens so far can match exactly text[..j].
    let mut reachable = vec![false; text.len() + 1];
    reachable[0] = true;
    for token in glob {
        let mut next = vec![false; text.len() + 1];
        if *token == Token::AnyRun {
            let mut seen = false;
            for (j, slot) in next.iter_mut().enumerate() {
                seen |= reachable[j];
                *slot = seen;
            }
        } else {
            for (j, c) in text.iter().enumerate() {
                next[j + 1] = reachable[j] && token.matches_one(*c);
            }
        }
        reachable = next;
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Add;

    fn matches(pattern: &str, channel: &str) -> bool {
        ChannelPattern::parse(pattern).unwrap().matches(channel)
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("chat:*", "chat:room"));
        assert!(matches("chat:*", "chat:"));
        assert!(!matches("chat:*", "news:chat:room"));
        assert!(matches("*:room", "chat:room"));
        assert!(matches("*", "anything:at/all"));
        assert!(matches("c?at", "chat"));
        assert!(!matches("c?at", "cat"));
        assert!(matches("chat", "chat"));
        assert!(!matches("chat", "chats"));
    }

    #[test]
    fn sets_alternatives_and_escapes() {
        assert!(matches("room[0-9]", "room7"));
        assert!(!matches("room[0-9]", "roomx"));
        assert!(matches("room[!0-9]", "roomx"));
        assert!(matches("{chat,news}:*", "news:today"));
        assert!(!matches("{chat,news}:*", "sport:today"));
        assert!(matches("a\\*b", "a*b"));
        assert!(!matches("a\\*b", "axb"));
    }

    #[test]
    fn nested_alternatives_and_stars_that_would_backtrack() {
        assert!(matches("{chat:{a,b},news}*", "chat:b1"));
        assert!(matches("{chat:{a,b},news}*", "news"));
        assert!(!matches("{chat:{a,b},news}*", "chat:c"));
        assert!(matches("{,x}y", "y"));
        let channel = "a".repeat(255);
        assert!(!matches(&"*a".repeat(40).add("b"), &channel));
        assert!(matches(&"*a".repeat(40), &channel));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        assert!(ChannelPattern::parse("room[0-9").is_err());
        assert!(ChannelPattern::parse("{chat,news").is_err());
        assert!(ChannelPattern::parse("trailing\\").is_err());
        assert!(ChannelPattern::parse("[z-a]").is_err());
        assert!(
            ChannelPattern::parse(&"{a,b}".repeat(9)).is_err(),
            "512 combinations"
        );
    }
}
