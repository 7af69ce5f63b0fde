//! Connection and subscription tokens. (Being written.)

mod settings;

pub use settings::TokenSettings;
