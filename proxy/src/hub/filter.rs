//! Publication tags filters: a subscriber's `tf` (Centrifugo's FilterNode tree), checked once at
//! subscribe and compiled into a [`TagsFilter`] that the hub evaluates against each
//! publication's tags.
//!
//! Semantics follow Centrifugo: a leaf compares one tag (`eq`, `neq`, `in`, `nin`, `ex`, `nex`,
//! `sw`, `ew`, `ct`, and the numeric `gt`, `gte`, `lt`, `lte`); `and`/`or` need at least one child
//! and `not` exactly one. A missing tag is unequal to everything (`neq` matches), reads as the
//! empty string for `in`/`nin`, and fails every string and numeric comparison. Numbers are decimal
//! (`-12.50`); a tag or value that is not one makes the comparison false.

use std::cmp::Ordering;
use std::collections::HashMap;

use gyre_proto::protocol::FilterNode;

/// Deeper trees are refused: evaluation recurses, and no sensible filter needs this many levels.
const MAX_DEPTH: usize = 32;

/// Why a `tf` was refused (the client gets error 107).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown op {0:?} (expected \"\", \"and\", \"or\" or \"not\")")]
    UnknownOp(String),
    #[error("unknown cmp {0:?}")]
    UnknownCmp(String),
    #[error("a leaf needs cmp")]
    MissingCmp,
    #[error("cmp {0} needs key")]
    MissingKey(String),
    #[error("cmp {0} needs val (and no vals)")]
    NeedsVal(String),
    #[error("cmp {0} needs non-empty vals (and no val)")]
    NeedsVals(String),
    #[error("cmp {0} takes neither val nor vals")]
    NoOperand(String),
    #[error("{0} needs at least one node")]
    NoNodes(String),
    #[error("not needs exactly one node")]
    NotArity,
    #[error("filter nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A validated filter. Equal filters compare equal (and hash alike), so the hub can evaluate
/// each distinct filter of a channel once per publication.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TagsFilter {
    All(Vec<TagsFilter>),
    Any(Vec<TagsFilter>),
    Not(Box<TagsFilter>),
    Tag { key: String, test: Test },
}

/// What a leaf checks about its tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    Eq(String),
    Neq(String),
    /// Sorted and deduplicated, for a binary search.
    In(Vec<String>),
    Nin(Vec<String>),
    Exists,
    NotExists,
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    /// `None`: the filter's value is no number, so the comparison is always false.
    Numeric(Ordering, bool, Option<Decimal>),
}

impl TagsFilter {
    pub fn compile(node: &FilterNode) -> Result<Self, FilterError> {
        Self::compile_at(node, 1)
    }

    fn compile_at(node: &FilterNode, depth: usize) -> Result<Self, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::TooDeep);
        }
        let children = || {
            node.nodes
                .iter()
                .map(|child| Self::compile_at(child, depth + 1))
                .collect::<Result<Vec<_>, _>>()
        };
        match node.op.as_str() {
            "" => Self::leaf(node),
            "and" | "or" if node.nodes.is_empty() => Err(FilterError::NoNodes(node.op.clone())),
            "and" => Ok(Self::All(children()?)),
            "or" => Ok(Self::Any(children()?)),
            "not" if node.nodes.len() != 1 => Err(FilterError::NotArity),
            "not" => Ok(Self::Not(Box::new(Self::compile_at(
                &node.nodes[0],
                depth + 1,
            )?))),
            other => Err(FilterError::UnknownOp(other.to_owned())),
        }
    }

    fn leaf(node: &FilterNode) -> Result<Self, FilterError> {
        let cmp = node.cmp.as_str();
        let val = || {
            if node.val.is_empty() || !node.vals.is_empty() {
                Err(FilterError::NeedsVal(cmp.to_owned()))
            } else {
                Ok(node.val.clone())
            }
        };
        let vals = || {
            if node.vals.is_empty() || !node.val.is_empty() {
                return Err(FilterError::NeedsVals(cmp.to_owned()));
            }
            let mut vals = node.vals.clone();
            vals.sort_unstable();
            vals.dedup();
            Ok(vals)
        };
        let none = || {
            if node.val.is_empty() && node.vals.is_empty() {
                Ok(())
            } else {
                Err(FilterError::NoOperand(cmp.to_owned()))
            }
        };
        let numeric = |ordering, or_equal| {
            let value = val()?;
            Ok(Test::Numeric(ordering, or_equal, Decimal::parse(&value)))
        };
        let test = match cmp {
            "" => return Err(FilterError::MissingCmp),
            "eq" => Test::Eq(val()?),
            "neq" => Test::Neq(val()?),
            "in" => Test::In(vals()?),
            "nin" => Test::Nin(vals()?),
            "ex" => none().map(|()| Test::Exists)?,
            "nex" => none().map(|()| Test::NotExists)?,
            "sw" => Test::StartsWith(val()?),
            "ew" => Test::EndsWith(val()?),
            "ct" => Test::Contains(val()?),
            "gt" => numeric(Ordering::Greater, false)?,
            "gte" => numeric(Ordering::Greater, true)?,
            "lt" => numeric(Ordering::Less, false)?,
            "lte" => numeric(Ordering::Less, true)?,
            other => return Err(FilterError::UnknownCmp(other.to_owned())),
        };
        // Existence checks of the empty key are allowed (Centrifugo does too); nothing else is.
        if node.key.is_empty() && !matches!(test, Test::Exists | Test::NotExists) {
            return Err(FilterError::MissingKey(cmp.to_owned()));
        }
        Ok(Self::Tag {
            key: node.key.clone(),
            test,
        })
    }

    /// Whether a publication with these tags passes.
    pub fn matches(&self, tags: &HashMap<String, String>) -> bool {
        match self {
            Self::All(nodes) => nodes.iter().all(|n| n.matches(tags)),
            Self::Any(nodes) => nodes.iter().any(|n| n.matches(tags)),
            Self::Not(node) => !node.matches(tags),
            Self::Tag { key, test } => {
                let tag = tags.get(key).map(String::as_str);
                match test {
                    Test::Eq(v) => tag == Some(v.as_str()),
                    Test::Neq(v) => tag != Some(v.as_str()),
                    Test::In(vs) => vs
                        .binary_search_by(|v| v.as_str().cmp(tag.unwrap_or("")))
                        .is_ok(),
                    Test::Nin(vs) => vs
                        .binary_search_by(|v| v.as_str().cmp(tag.unwrap_or("")))
                        .is_err(),
                    Test::Exists => tag.is_some(),
                    Test::NotExists => tag.is_none(),
                    Test::StartsWith(v) => tag.is_some_and(|t| t.starts_with(v.as_str())),
                    Test::EndsWith(v) => tag.is_some_and(|t| t.ends_with(v.as_str())),
                    Test::Contains(v) => tag.is_some_and(|t| t.contains(v.as_str())),
                    Test::Numeric(ordering, or_equal, value) => {
                        match (tag.and_then(Decimal::parse), value) {
                            (Some(tag), Some(value)) => {
                                let found = tag.cmp(value);
                                found == *ordering || (*or_equal && found == Ordering::Equal)
                            }
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

/// An exact decimal number (`[+-]digits[.digits]`), compared without rounding: tags like prices
/// compare as numbers, however many digits they have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    negative: bool,
    /// Integer digits without leading zeros.
    integer: String,
    /// Fraction digits without trailing zeros.
    fraction: String,
}

impl Decimal {
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, unsigned) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if integer.is_empty()
            || !digits(integer)
            || !digits(fraction)
            || (unsigned.contains('.') && fraction.is_empty())
        {
            return None;
        }
        let integer = integer.trim_start_matches('0').to_owned();
        let fraction = fraction.trim_end_matches('0').to_owned();
        // -0 is 0.
        let negative = negative && !(integer.is_empty() && fraction.is_empty());
        Some(Self {
            negative,
            integer,
            fraction,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(&other.integer))
            .then_with(|| self.fraction.cmp(&other.fraction))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, cmp: &str, val: &str) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            val: val.into(),
            ..Default::default()
        }
    }

    fn set(key: &str, cmp: &str, vals: &[&str]) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            vals: vals.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    fn op(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
        FilterNode {
            op: op.into(),
            nodes,
            ..Default::default()
        }
    }

    fn tags() -> HashMap<String, String> {
        [
            ("ticker", "AAPL"),
            ("source", "NASDAQ"),
            ("price", "150.25"),
            ("category", "tech"),
            ("volume", "1000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    fn check(node: FilterNode) -> bool {
        TagsFilter::compile(&node).unwrap().matches(&tags())
    }

    #[test]
    fn every_comparison() {
        for (node, expected) in [
            (leaf("ticker", "eq", "AAPL"), true),
            (leaf("ticker", "eq", "MSFT"), false),
            (leaf("missing", "eq", "x"), false),
            (leaf("source", "neq", "TEST"), true),
            (leaf("source", "neq", "NASDAQ"), false),
            (leaf("missing", "neq", "x"), true),
            (set("category", "in", &["tech", "finance"]), true),
            (set("category", "in", &["finance"]), false),
            (set("missing", "in", &["x", ""]), true),
            (set("ticker", "nin", &["MSFT", "GOOGL"]), true),
            (set("ticker", "nin", &["AAPL"]), false),
            (leaf("price", "ex", ""), true),
            (leaf("internal_id", "ex", ""), false),
            (leaf("internal_id", "nex", ""), true),
            (leaf("price", "nex", ""), false),
            (leaf("ticker", "sw", "AA"), true),
            (leaf("ticker", "sw", "PL"), false),
            (leaf("source", "ew", "DAQ"), true),
            (leaf("missing", "ew", "DAQ"), false),
            (leaf("category", "ct", "ec"), true),
            (leaf("category", "ct", "xx"), false),
            (leaf("price", "gt", "100"), true),
            (leaf("price", "gt", "150.25"), false),
            (leaf("price", "gte", "150.250"), true),
            (leaf("volume", "gte", "1000"), true),
            (leaf("price", "lt", "200"), true),
            (leaf("price", "lt", "99.9"), false),
            (leaf("volume", "lte", "1000"), true),
            (leaf("volume", "lte", "999.99"), false),
            (leaf("ticker", "gt", "1"), false),
            (leaf("missing", "lt", "1"), false),
            (leaf("price", "gt", "abc"), false),
        ] {
            assert_eq!(check(node.clone()), expected, "{node:?}");
        }
    }

    #[test]
    fn logic_nests() {
        let aapl = || leaf("ticker", "eq", "AAPL");
        let msft = || leaf("ticker", "eq", "MSFT");
        assert!(check(op(
            "and",
            vec![aapl(), leaf("category", "eq", "tech")]
        )));
        assert!(!check(op("and", vec![aapl(), msft()])));
        assert!(check(op("or", vec![msft(), aapl()])));
        assert!(!check(op("or", vec![msft()])));
        assert!(check(op("not", vec![msft()])));
        assert!(check(op(
            "and",
            vec![
                op("or", vec![msft(), op("not", vec![op("not", vec![aapl()])])]),
                leaf("price", "gte", "100"),
                set("source", "in", &["NASDAQ", "NYSE"]),
            ]
        )));
    }

    #[test]
    fn invalid_filters_are_refused() {
        for (node, error) in [
            (leaf("k", "", ""), FilterError::MissingCmp),
            (
                leaf("k", "like", "x"),
                FilterError::UnknownCmp("like".into()),
            ),
            (leaf("", "eq", "x"), FilterError::MissingKey("eq".into())),
            (leaf("k", "eq", ""), FilterError::NeedsVal("eq".into())),
            (leaf("k", "gt", ""), FilterError::NeedsVal("gt".into())),
            (set("k", "in", &[]), FilterError::NeedsVals("in".into())),
            (
                FilterNode {
                    val: "x".into(),
                    ..set("k", "nin", &["a"])
                },
                FilterError::NeedsVals("nin".into()),
            ),
            (leaf("k", "ex", "x"), FilterError::NoOperand("ex".into())),
            (op("and", vec![]), FilterError::NoNodes("and".into())),
            (op("or", vec![]), FilterError::NoNodes("or".into())),
            (op("not", vec![]), FilterError::NotArity),
            (
                op("not", vec![leaf("a", "ex", ""), leaf("b", "ex", "")]),
                FilterError::NotArity,
            ),
            (op("xor", vec![]), FilterError::UnknownOp("xor".into())),
            (
                op("and", vec![leaf("a", "ex", ""), leaf("k", "eq", "")]),
                FilterError::NeedsVal("eq".into()),
            ),
        ] {
            assert_eq!(TagsFilter::compile(&node), Err(error), "{node:?}");
        }
        let mut deep = leaf("a", "ex", "");
        for _ in 0..MAX_DEPTH {
            deep = op("not", vec![deep]);
        }
        assert_eq!(TagsFilter::compile(&deep), Err(FilterError::TooDeep));
    }

    #[test]
    fn equal_filters_are_equal() {
        let a = TagsFilter::compile(&set("k", "in", &["b", "a", "b"])).unwrap();
        let b = TagsFilter::compile(&set("k", "in", &["a", "b"])).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn decimals_compare_exactly() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert!(d("10") > d("9.999"));
        assert!(d("-1") < d("0"));
        assert!(d("-10") < d("-9"));
        assert_eq!(d("-0.0"), d("0"));
        assert_eq!(d("007.50"), d("7.5"));
        assert!(d("123456789012345678901234567890.1") > d("123456789012345678901234567890"));
        for bad in ["", "-", ".5", "5.", "1e3", "1.2.3", " 1", "0x10"] {
            assert_eq!(Decimal::parse(bad), None, "{bad:?}");
        }
    }
}
