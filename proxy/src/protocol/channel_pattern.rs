//! The `pattern` of the server API's `channels`: Centrifugo's glob syntax (it matches with
//! gobwas/glob and no separators), so a backend's filters select the same channels here.
//!
//! `*` any run of characters (`**` too), `?` one character, `[abc]` / `[a-z]` one of a set,
//! `[!abc]` one not in it, `{chat:*,news}` one of the alternatives, `\` takes the next character
//! literally. A pattern that does not parse (an unclosed `[` or `{`) is an error rather than a
//! match of nothing, so a typo is noticed.

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPattern(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Alternatives(Vec<ChannelPattern>),
}

impl ChannelPattern {
    /// Parses `text`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.chars().collect();
        let (pattern, end) = parse_seq(&chars, 0, false)?;
        debug_assert_eq!(end, chars.len());
        Ok(pattern)
    }

    pub fn matches(&self, channel: &str) -> bool {
        let text: Vec<char> = channel.chars().collect();
        matches_at(&self.0, &text)
    }
}

/// Tokens from `start` until the end, or (inside `{…}`) until an unescaped `,` or `}`; returns
/// where it stopped.
fn parse_seq(
    chars: &[char],
    mut i: usize,
    in_alternative: bool,
) -> Result<(ChannelPattern, usize), String> {
    let mut tokens = Vec::new();
    while i < chars.len() {
        match chars[i] {
            ',' | '}' if in_alternative => break,
            '\\' => {
                let next = chars.get(i + 1).ok_or("the pattern ends with a lone \\")?;
                tokens.push(Token::Literal(*next));
                i += 2;
            }
            '*' => {
                if tokens.last() != Some(&Token::AnyRun) {
                    tokens.push(Token::AnyRun);
                }
                i += 1;
            }
            '?' => {
                tokens.push(Token::AnyOne);
                i += 1;
            }
            '[' => {
                let (token, next) = parse_class(chars, i + 1)?;
                tokens.push(token);
                i = next;
            }
            '{' => {
                let mut alternatives = Vec::new();
                i += 1;
                loop {
                    let (alternative, next) = parse_seq(chars, i, true)?;
                    alternatives.push(alternative);
                    match chars.get(next) {
                        Some(',') => i = next + 1,
                        Some('}') => {
                            i = next + 1;
                            break;
                        }
                        _ => return Err("a { has no closing }".to_owned()),
                    }
                }
                tokens.push(Token::Alternatives(alternatives));
            }
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    Ok((ChannelPattern(tokens), i))
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

fn matches_at(tokens: &[Token], text: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Literal(c) => text.first() == Some(c) && matches_at(rest, &text[1..]),
        Token::AnyOne => !text.is_empty() && matches_at(rest, &text[1..]),
        Token::Class { negated, ranges } => text.first().is_some_and(|c| {
            let inside = ranges.iter().any(|(low, high)| (low..=high).contains(&c));
            inside != *negated && matches_at(rest, &text[1..])
        }),
        Token::AnyRun => (0..=text.len()).any(|skip| matches_at(rest, &text[skip..])),
        Token::Alternatives(alternatives) => alternatives.iter().any(|alternative| {
            let mut joined = alternative.0.clone();
            joined.extend_from_slice(rest);
            matches_at(&joined, text)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn malformed_patterns_are_errors() {
        assert!(ChannelPattern::parse("room[0-9").is_err());
        assert!(ChannelPattern::parse("{chat,news").is_err());
        assert!(ChannelPattern::parse("trailing\\").is_err());
        assert!(ChannelPattern::parse("[z-a]").is_err());
    }
}
