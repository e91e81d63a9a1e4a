//! The instance user data, rendered by `spotfit_core::user_data` (pure string rendering, so
//! the spec validator can bound it and the fuzzer can run it without the AWS SDK).

pub use spotfit_core::user_data::*;
