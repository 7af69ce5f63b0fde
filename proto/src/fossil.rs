//! Fossil deltas (the format of Fossil SCM's `delta.c`, which Centrifugo's delta compression and
//! its SDKs use): [`create`] turns a previous payload into the next one with copy and insert
//! commands, [`apply`] replays them.
//!
//! Format: `<target length>\n`, then commands, then `<checksum>;`. Numbers are written in the
//! format's base 64 (`0-9 A-Z _ a-z ~`, most significant digit first). `<n>@<offset>,` copies `n`
//! bytes of the source from `offset`; `<n>:<bytes>` inserts the `n` bytes that follow. The
//! checksum is the 32-bit wrapping sum of the target read as big-endian words, the last one padded
//! with zeros.
//!
//! The encoder is ours: the source is indexed by the hash of every aligned [`BLOCK`]-byte block,
//! the target is scanned with a rolling hash, and each hit is grown both ways. When the target is
//! UTF-8 text, copies start and end on character boundaries, so every inserted run is whole
//! characters and the delta itself is valid UTF-8: JSON clients receive it as a JSON string.

/// The length of the source blocks matches start from.
const BLOCK: usize = 16;
/// How many candidate blocks one target position tries (bounds the work on repetitive input).
const MAX_CANDIDATES: usize = 64;
/// A match this long ends the search for a longer one.
const GOOD_ENOUGH: usize = 256;
/// Multiplier of the rolling hash (odd, so the hash keeps every bit of information).
const HASH_BASE: u32 = 0x0100_0193;
/// `HASH_BASE^(BLOCK-1)`: the weight of the byte leaving the window.
const HASH_OUT: u32 = HASH_BASE.wrapping_pow(BLOCK as u32 - 1);

const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// Why a delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("malformed delta at byte {0}")]
    Malformed(usize),
    #[error("delta output of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("copy outside the source ({offset} + {len} > {source_len})")]
    CopyOutOfRange {
        offset: usize,
        len: usize,
        source_len: usize,
    },
    #[error("delta output does not have the announced size")]
    SizeMismatch,
    #[error("delta checksum mismatch")]
    Checksum,
}

/// The delta that turns `source` into `target`.
pub fn create(source: &[u8], target: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(target).ok();
    let mut out = Vec::with_capacity(target.len() / 4 + 32);
    put_number(&mut out, target.len());
    out.push(b'\n');
    let index = SourceIndex::new(source);
    let mut literal_from = 0;
    let mut pos = 0;
    let mut hash = window_hash(target, 0);
    while pos + BLOCK <= target.len() {
        if let Some(found) = index.longest_match(source, target, pos, literal_from, hash)
            && let Some(copy) = align_copy(found, text)
            && copy.len > copy_cost(&copy) + 1
        {
            if copy.target_start > literal_from {
                put_insert(&mut out, &target[literal_from..copy.target_start]);
            }
            put_number(&mut out, copy.len);
            out.push(b'@');
            put_number(&mut out, copy.source_start);
            out.push(b',');
            pos = copy.target_start + copy.len;
            literal_from = pos;
            hash = window_hash(target, pos);
            continue;
        }
        if pos + BLOCK < target.len() {
            hash = roll(hash, target[pos], target[pos + BLOCK]);
        }
        pos += 1;
    }
    if literal_from < target.len() {
        put_insert(&mut out, &target[literal_from..]);
    }
    put_number(&mut out, checksum(target) as usize);
    out.push(b';');
    out
}

/// Replays `delta` on `source`; `limit` bounds the output size the delta may announce.
pub fn apply(source: &[u8], delta: &[u8], limit: usize) -> Result<Vec<u8>, ApplyError> {
    let mut reader = Reader { delta, pos: 0 };
    let size = reader.number()?;
    if size > limit {
        return Err(ApplyError::TooLarge { size, limit });
    }
    reader.expect(b'\n')?;
    let mut out = Vec::with_capacity(size);
    loop {
        let n = reader.number()?;
        match reader.byte()? {
            b'@' => {
                let offset = reader.number()?;
                reader.expect(b',')?;
                let end = offset
                    .checked_add(n)
                    .filter(|&end| end <= source.len())
                    .ok_or(ApplyError::CopyOutOfRange {
                        offset,
                        len: n,
                        source_len: source.len(),
                    })?;
                if out.len() + n > size {
                    return Err(ApplyError::SizeMismatch);
                }
                out.extend_from_slice(&source[offset..end]);
            }
            b':' => {
                let bytes = reader.take(n)?;
                if out.len() + n > size {
                    return Err(ApplyError::SizeMismatch);
                }
                out.extend_from_slice(bytes);
            }
            b';' => {
                if out.len() != size {
                    return Err(ApplyError::SizeMismatch);
                }
                if n != checksum(&out) as usize {
                    return Err(ApplyError::Checksum);
                }
                return Ok(out);
            }
            _ => return Err(ApplyError::Malformed(reader.pos - 1)),
        }
    }
}

/// A match: `len` bytes of the target at `target_start` equal the source at `source_start`.
#[derive(Debug, Clone, Copy)]
struct Copy {
    target_start: usize,
    source_start: usize,
    len: usize,
}

/// Bytes a copy command takes: `<len>@<offset>,`.
fn copy_cost(copy: &Copy) -> usize {
    digit_count(copy.len) + digit_count(copy.source_start) + 2
}

/// Shrinks a copy of UTF-8 text to character boundaries (so the inserts around it are whole
/// characters); `None` if nothing is left.
fn align_copy(copy: Copy, text: Option<&str>) -> Option<Copy> {
    let Some(text) = text else {
        return Some(copy);
    };
    let mut start = copy.target_start;
    let end_limit = copy.target_start + copy.len;
    while start < end_limit && !text.is_char_boundary(start) {
        start += 1;
    }
    let mut end = end_limit;
    while end > start && !text.is_char_boundary(end) {
        end -= 1;
    }
    (end > start).then(|| Copy {
        target_start: start,
        source_start: copy.source_start + (start - copy.target_start),
        len: end - start,
    })
}

/// The source's aligned blocks by hash: `heads[bucket]` is the last block in a bucket and
/// `previous[block]` the one before it in the same bucket (`u32::MAX` ends a chain).
struct SourceIndex {
    heads: Vec<u32>,
    previous: Vec<u32>,
    mask: u32,
}

impl SourceIndex {
    fn new(source: &[u8]) -> Self {
        let blocks = source.len() / BLOCK;
        let buckets = blocks.max(1).next_power_of_two();
        let mut index = Self {
            heads: vec![u32::MAX; buckets],
            previous: vec![u32::MAX; blocks],
            mask: buckets as u32 - 1,
        };
        // Inserted last to first, so each chain lists its blocks from the start of the source:
        // in repetitive input the earliest block tends to give the longest match, which ends the
        // search early (see `longest_match`).
        for block in (0..blocks).rev() {
            let bucket = index.bucket(window_hash(source, block * BLOCK));
            index.previous[block] = index.heads[bucket];
            index.heads[bucket] = block as u32;
        }
        index
    }

    fn bucket(&self, hash: u32) -> usize {
        // Mixed first: the low bits of the rolling hash alone depend on the last bytes only.
        (hash.wrapping_mul(0x9E37_79B1).rotate_left(15) & self.mask) as usize
    }

    /// The longest match around target position `pos` (whose window hash is `hash`) that does
    /// not reach back before `floor` (bytes before it are already encoded).
    fn longest_match(
        &self,
        source: &[u8],
        target: &[u8],
        pos: usize,
        floor: usize,
        hash: u32,
    ) -> Option<Copy> {
        if self.previous.is_empty() {
            return None;
        }
        let window = &target[pos..pos + BLOCK];
        let mut best: Option<Copy> = None;
        let mut block = self.heads[self.bucket(hash)];
        for _ in 0..MAX_CANDIDATES {
            if block == u32::MAX {
                break;
            }
            let start = block as usize * BLOCK;
            block = self.previous[block as usize];
            if &source[start..start + BLOCK] != window {
                continue;
            }
            let mut back = 0;
            while back < pos - floor
                && back < start
                && source[start - back - 1] == target[pos - back - 1]
            {
                back += 1;
            }
            let mut forward = BLOCK;
            while start + forward < source.len()
                && pos + forward < target.len()
                && source[start + forward] == target[pos + forward]
            {
                forward += 1;
            }
            let len = back + forward;
            if best.is_none_or(|b| len > b.len) {
                best = Some(Copy {
                    target_start: pos - back,
                    source_start: start - back,
                    len,
                });
            }
            if pos + forward == target.len() || len >= GOOD_ENOUGH {
                // Nothing can copy past the end of the target; and past a few hundred bytes a
                // longer copy saves little, while trying every candidate of a repetitive run
                // would cost a full extension each.
                break;
            }
        }
        best
    }
}

/// The hash of the `BLOCK` bytes at `pos` (0 when fewer remain: the scan never uses it then).
fn window_hash(bytes: &[u8], pos: usize) -> u32 {
    bytes.get(pos..pos + BLOCK).map_or(0, |window| {
        window.iter().fold(0u32, |h, &b| {
            h.wrapping_mul(HASH_BASE).wrapping_add(u32::from(b))
        })
    })
}

/// Moves the window one byte on: `out` leaves, `next` enters.
fn roll(hash: u32, out: u8, next: u8) -> u32 {
    hash.wrapping_sub(u32::from(out).wrapping_mul(HASH_OUT))
        .wrapping_mul(HASH_BASE)
        .wrapping_add(u32::from(next))
}

fn put_insert(out: &mut Vec<u8>, bytes: &[u8]) {
    put_number(out, bytes.len());
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn put_number(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 11];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = DIGITS[n & 63];
        n >>= 6;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn digit_count(mut n: usize) -> usize {
    let mut count = 1;
    while n >= 64 {
        n >>= 6;
        count += 1;
    }
    count
}

/// The format's checksum: big-endian 32-bit words summed with wrap-around, the last word padded
/// with zeros.
fn checksum(bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(4);
    let mut sum = 0u32;
    for word in &mut words {
        sum = sum.wrapping_add(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let mut tail = [0u8; 4];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    sum.wrapping_add(u32::from_be_bytes(tail))
}

struct Reader<'a> {
    delta: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn number(&mut self) -> Result<usize, ApplyError> {
        let start = self.pos;
        let mut n: usize = 0;
        while let Some(digit) = self
            .delta
            .get(self.pos)
            .and_then(|b| DIGITS.iter().position(|d| d == b))
        {
            n = n
                .checked_mul(64)
                .and_then(|n| n.checked_add(digit))
                .filter(|&n| n <= u32::MAX as usize)
                .ok_or(ApplyError::Malformed(self.pos))?;
            self.pos += 1;
        }
        if self.pos == start {
            return Err(ApplyError::Malformed(start));
        }
        Ok(n)
    }

    fn byte(&mut self) -> Result<u8, ApplyError> {
        let byte = *self
            .delta
            .get(self.pos)
            .ok_or(ApplyError::Malformed(self.pos))?;
        self.pos += 1;
        Ok(byte)
    }

    fn expect(&mut self, wanted: u8) -> Result<(), ApplyError> {
        let at = self.pos;
        if self.byte()? == wanted {
            Ok(())
        } else {
            Err(ApplyError::Malformed(at))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApplyError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.delta.len())
            .ok_or(ApplyError::Malformed(self.pos))?;
        let bytes = &self.delta[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so failures reproduce.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn round_trip(source: &[u8], target: &[u8]) -> Vec<u8> {
        let delta = create(source, target);
        assert_eq!(
            apply(source, &delta, target.len()).as_deref(),
            Ok(target),
            "delta {:?}",
            String::from_utf8_lossy(&delta)
        );
        delta
    }

    #[test]
    fn numbers_use_the_format_digits() {
        let mut out = Vec::new();
        for n in [0, 63, 64, 4095, 1 << 24] {
            out.clear();
            put_number(&mut out, n);
            assert_eq!(out.len(), digit_count(n));
            assert_eq!(
                Reader {
                    delta: &out,
                    pos: 0
                }
                .number(),
                Ok(n)
            );
        }
        out.clear();
        put_number(&mut out, 64);
        assert_eq!(out, b"10");
    }

    #[test]
    fn a_hand_written_delta_applies() {
        // "hello world" → "hello there world": copy 6, insert "there ", copy 5 from 6.
        let target = b"hello there world";
        let mut delta = b"H\n6@0,6:there 5@6,".to_vec();
        put_number(&mut delta, checksum(target) as usize);
        delta.push(b';');
        assert_eq!(apply(b"hello world", &delta, 100).unwrap(), target);
    }

    #[test]
    fn the_checksum_pads_the_last_word() {
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(b"\x00\x00\x00\x01"), 1);
        assert_eq!(checksum(b"\x01"), 0x0100_0000);
        assert_eq!(checksum(b"\xff\xff\xff\xff\x00\x00\x00\x02"), 1);
    }

    #[test]
    fn similar_payloads_give_small_deltas() {
        let previous = br#"{"match":"A-B","score":[1,0],"minute":12,"events":["goal by 9","yellow card 4","corner"],"possession":[55,45]}"#;
        let next = br#"{"match":"A-B","score":[1,1],"minute":13,"events":["goal by 9","yellow card 4","corner","goal by 11"],"possession":[53,47]}"#;
        let delta = round_trip(previous, next);
        assert!(delta.len() * 3 < next.len() * 2, "{} bytes", delta.len());
    }

    #[test]
    fn edge_cases_round_trip() {
        round_trip(b"", b"");
        round_trip(b"", b"new");
        round_trip(b"old", b"");
        round_trip(b"short", b"short");
        let long = b"0123456789abcdefghijklmnopqrstuvwxyz".repeat(20);
        let delta = round_trip(&long, &long);
        assert!(delta.len() < 16, "identical input is one copy");
        round_trip(&long, &long[5..300]);
        round_trip(&vec![b'a'; 5000], &vec![b'a'; 7000]);
    }

    #[test]
    fn random_edits_round_trip() {
        let mut rng = Lcg(7);
        for _ in 0..300 {
            let len = rng.below(3000);
            let source: Vec<u8> = (0..len)
                .map(|_| b"abcdefgh {}\":,"[rng.below(14)])
                .collect();
            let mut target = source.clone();
            for _ in 0..rng.below(20) {
                let at = rng.below(target.len() + 1);
                match rng.below(3) {
                    0 => target.insert(at, rng.below(256) as u8),
                    1 if at < target.len() => {
                        target.remove(at);
                    }
                    _ => {
                        let from = rng.below(source.len() + 1);
                        let to = (from + rng.below(200)).min(source.len());
                        target.splice(at..at, source[from..to].iter().copied());
                    }
                }
            }
            round_trip(&source, &target);
        }
    }

    #[test]
    fn text_deltas_are_utf8() {
        let mut rng = Lcg(11);
        let alphabet = ["é", "ж", "€", "😀", "a", "b", " ", "漢"];
        for _ in 0..200 {
            let words: Vec<&str> = (0..rng.below(400))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let source = words.concat();
            let mut edited = words.clone();
            for _ in 0..rng.below(10) {
                let at = rng.below(edited.len() + 1);
                edited.insert(at, alphabet[rng.below(alphabet.len())]);
            }
            let target = edited.concat();
            let delta = round_trip(source.as_bytes(), target.as_bytes());
            assert!(std::str::from_utf8(&delta).is_ok(), "{delta:?}");
        }
    }

    #[test]
    fn bad_deltas_are_errors_not_panics() {
        let source = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let good = create(source, b"0123456789abcdefghijklmnopqrstuvwxyz!");
        for cut in 0..good.len() {
            assert!(apply(source, &good[..cut], 100).is_err());
        }
        for bad in [
            &b"A\nZZZZZZZZ@0,0;"[..],
            b"3\n3@40,0;",
            b"3\n5:abc",
            b"3\n3:abc1;",
            b"3\n3?abc0;",
            b"~~~~~~\n",
        ] {
            assert!(apply(source, bad, 100).is_err(), "{bad:?}");
        }
        assert_eq!(
            apply(source, b"Z\n", 10),
            Err(ApplyError::TooLarge {
                size: 35,
                limit: 10
            })
        );
    }
}
