//! Encodings of the client protocol. One codec per encoding, shared by every transport.

pub mod json;
